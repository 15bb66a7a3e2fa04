# small: a 2-core CPU, well under an hour.  A 0.8M-parameter Llama on 20
# fictitious authors x 20 questions and 40 general facts; forget10 = 2
# authors (40 items, the size of TOFU's forget01).
AUTHORS=20 QA=20 FACTS=40 SPLIT=10 RETAIN_EVAL=60
CONFIG=config-small.json
TRAIN_EPOCHS=30 TRAIN_LR=3e-3 TRAIN_BATCH=8
UNLEARN_LR=1e-3 UNLEARN_BATCH=4 UNLEARN_ACCUM=2
KAPPAS="0.01 0.05 0.1"
ABLATION_KAPPA=0.05
ALGOS="ga graddiff npo simnpo undial satimp wga idkdpo"
SEEDS="1"
EVAL_MAX_NEW=48
JOBS=2 THREADS=1
