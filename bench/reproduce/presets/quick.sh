# quick: a smoke run of the whole pipeline in a few minutes (two algorithms,
# one kappa, a half-trained model); its numbers mean nothing.
AUTHORS=6 QA=6 FACTS=10 SPLIT=20
CONFIG=config-small.json
TRAIN_EPOCHS=6 TRAIN_LR=3e-3 TRAIN_BATCH=8
UNLEARN_LR=1e-3 UNLEARN_BATCH=4 UNLEARN_ACCUM=2
KAPPAS="0.05"
ABLATION_KAPPA=0.05
ALGOS="graddiff npo"
SEEDS="1"
EVAL_MAX_NEW=16
JOBS=2 THREADS=1
