# large: TOFU's own size (200 authors x 20 questions, forget10 = 20 authors,
# 400 items) on a 100M-parameter Llama; a large machine, a day or more on CPU.
AUTHORS=200 QA=20 FACTS=400 SPLIT=10
CONFIG=config-large.json
TRAIN_EPOCHS=20 TRAIN_LR=5e-4 TRAIN_BATCH=32
UNLEARN_LR=1e-5 UNLEARN_BATCH=8 UNLEARN_ACCUM=4
KAPPAS="0.01 0.05 0.1"
ABLATION_KAPPA=0.05
ALGOS="ga graddiff npo simnpo undial satimp wga idkdpo"
SEEDS="1 2 3"
EVAL_MAX_NEW=200
JOBS=2 THREADS=8
