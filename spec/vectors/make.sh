#!/usr/bin/env bash
# make.sh OUTDIR -- (re)generates the spec's test vectors and their expected
# outputs.  Run through `make vectors` after a deliberate format change, then
# review the diff: every changed byte here is a compatibility decision.
#
#   NAME.mpuc            the stream
#   NAME.inspect.txt     `mpu inspect NAME.mpuc`
#   NAME.inspect.jsonl   `mpu inspect --json NAME.mpuc`
#   NAME.verify.json     `mpu verify --json NAME.mpuc` (ids and digests)
#   bad/NAME.mpuc        a damaged stream; bad/NAME.expect: exit status and
#                        a phrase the message must contain
set -euo pipefail
out=$1
here=$(cd "$(dirname "$0")" && pwd)
export PATH="${MPU_BIN:?}:$PATH"
tools=${MPU_TOOLS:?}
mkdir -p "$out/bad"
cd "$out"

mpu init --config "$here/micro.json" --tokenizer none --seed 1 --force -o micro-f32.mpuc
mpu init --config "$here/micro.json" --tokenizer none --seed 1 --dtype bf16 --store --force -o micro-bf16-store.mpuc
mpu convert --level 3 --no-group --chunk-size 4KiB --force -o micro-bf16-converted.mpuc micro-bf16-store.mpuc
"$tools/mkvector" multicopy > multicopy.mpuc
"$tools/mkvector" empty > empty.mpuc

for v in micro-f32 micro-bf16-store micro-bf16-converted multicopy empty; do
  mpu inspect "$v.mpuc" > "$v.inspect.txt"
  mpu inspect --json "$v.mpuc" > "$v.inspect.jsonl"
  mpu verify --json "$v.mpuc" | sed "s|\"file\":\"[^\"]*\"|\"file\":\"$v.mpuc\"|" > "$v.verify.json"
done

# Damaged streams, all made from micro-f32.mpuc.
src=micro-f32.mpuc
size=$(stat -c %s $src)
bad() { printf '%s\n%s\n' "$2" "$3" > "bad/$1.expect"; }
head -c $((size - 10)) $src > bad/truncated-in-trailer.mpuc
bad truncated-in-trailer 1 "inside its trailer"
head -c 3000 $src > bad/truncated-in-entry.mpuc
bad truncated-in-entry 1 "truncated: the stream ends inside tensor"
head -c 16 $src > bad/truncated-in-header.mpuc
bad truncated-in-header 1 "inside its header"
cp $src bad/flipped-header.mpuc
printf '\x01' | dd of=bad/flipped-header.mpuc bs=1 seek=60 conv=notrunc status=none
bad flipped-header 1 "the header is damaged"
first=$(mpu inspect --json $src | sed -n 2p | sed 's/.*"offset":\([0-9]*\).*/\1/')
cp $src bad/flipped-chunk.mpuc
printf '\xff' | dd of=bad/flipped-chunk.mpuc bs=1 seek=$((first + 120)) conv=notrunc status=none
bad flipped-chunk 1 "chunk 1"
cp $src bad/flipped-trailer.mpuc
printf '\x00' | dd of=bad/flipped-trailer.mpuc bs=1 seek=$((size - 50)) conv=notrunc status=none
bad flipped-trailer 1 "the trailer is damaged"
cp $src bad/trailing-data.mpuc && printf 'x' >> bad/trailing-data.mpuc
bad trailing-data 1 "trailing data"
cat $src $src > bad/concatenated.mpuc
bad concatenated 1 "concatenated streams"
: > bad/empty.mpuc
bad empty 1 "empty input"
echo "vectors written to $out"
