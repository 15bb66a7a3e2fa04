# medium: a workstation (8+ cores), a few hours.  A 10M-parameter Llama on 100
# authors x 20 questions, 200 general facts; forget10 = 10 authors; 3 seeds.
AUTHORS=100 QA=20 FACTS=200 SPLIT=10
CONFIG=config-medium.json
TRAIN_EPOCHS=30 TRAIN_LR=1e-3 TRAIN_BATCH=16
UNLEARN_LR=2e-4 UNLEARN_BATCH=8 UNLEARN_ACCUM=4
KAPPAS="0.01 0.05 0.1"
ABLATION_KAPPA=0.05
ALGOS="ga graddiff npo simnpo undial satimp wga idkdpo"
SEEDS="1 2 3"
EVAL_MAX_NEW=64
JOBS=4 THREADS=2
