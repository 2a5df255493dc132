#!/bin/bash
# One device run of issue 16: parallel data generation, four concurrent timed trainings
# (event lite2 and base from scratch, image lite2 from scratch, image lite fine-tuned from the
# shipped weights with photometric augmentation), then the device benchmarks.
# Env: DEV (cuda), MIN (training minutes), NSEQ (last train seed, from 1000), J (pregen jobs),
# OUT (results folder), PY (python).
set -u
DEV=${DEV:-cuda}; MIN=${MIN:-5}; NSEQ=${NSEQ:-1063}; J=${J:-16}; OUT=${OUT:-/tmp/out16}
PY=${PY:-python3}; TH=${TH:-3}; REP=${REP:-20}
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=$TH
mkdir -p "$OUT"; R=/tmp/runs16; C=/tmp/cache16; mkdir -p $R $C
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/campaign.log"; }
log "start DEV=$DEV MIN=$MIN NSEQ=$NSEQ"
$PY -c "import torch; print(torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(0))" 2>&1 | tee -a "$OUT/campaign.log"
$PY tools/pregen.py $C train 0.5 1000-$NSEQ $J 2>&1 | tee -a "$OUT/campaign.log"
$PY tools/pregen.py $C train 0.5 500-503 4 2>&1 | tee -a "$OUT/campaign.log"
T="$PY -m blinktrack_ros.cli train"
COMMON="--cache-dir $C --train-seeds 1000-$NSEQ --fresh-every 0 --device $DEV --minutes $MIN --steps 1000000 --threads $TH --ckpt-every 200 --photometric"
$T event --config lite2 --run-dir $R/ev_lite2 --lr 2e-3 --snippets 16 --tracks 16 --unroll 0:4,0.25:8,0.5:16 --kalman-in-loop --seed 21 --val-every 40 $COMMON > $R/ev_lite2.log 2>&1 &
$T event --config base --run-dir $R/ev_base --lr 1e-3 --snippets 16 --tracks 16 --unroll 0:4,0.25:8,0.5:16 --kalman-in-loop --seed 22 --val-every 40 $COMMON > $R/ev_base.log 2>&1 &
$T image --config lite2 --init-partial weights/image_lite.pt --run-dir $R/im_lite2 --lr 1e-3 --snippets 8 --tracks 32 --unroll 0:4,0.3:8 --seed 23 --val-every 40 $COMMON > $R/im_lite2.log 2>&1 &
$T image --config lite --init weights/image_lite.pt --run-dir $R/im_lite_ft --lr 3e-4 --snippets 8 --tracks 32 --unroll 0:8 --seed 24 --val-every 40 $COMMON > $R/im_lite_ft.log 2>&1 &
wait
log "training done"
for r in ev_lite2 ev_base im_lite2 im_lite_ft; do
  tail -c 1500 $R/$r.log | tr '\r' '\n' | grep -v "it/s\|s/it" | tail -4 >> "$OUT/campaign.log"
  [ -f $R/$r/best.pt ] && cp $R/$r/best.pt "$OUT/$r.pt"
done
(cd $R && tar czf "$OUT/logs16.tgz" */train.csv */val.csv */runs.jsonl *.log 2>/dev/null)
log "bench event"
$PY -m blinktrack_ros.cli bench event-net --device $DEV --config lite,lite2,base,paper --sizes 1,16,64 --autocast fp32,bf16,fp16 --repeats $REP --paper-repeats $REP --json > "$OUT/bench_event.json" 2>>"$OUT/campaign.log"
log "bench image"
$PY -m blinktrack_ros.cli bench image-net --device $DEV --configs lite,lite2,base,paper --tracks 64 --autocast fp32,bf16,fp16 --repeats $REP --json > "$OUT/bench_image.json" 2>>"$OUT/campaign.log"
log "end"
