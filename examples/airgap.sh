#!/usr/bin/env bash
# airgap.sh [WORKDIR] -- one whole MPU round across an air gap.
#
# The server and the client are two directories that share nothing but a
# "USB stick" (a third directory).  Everything that crosses it is a bundle
# (mpu pack): one reproducible tar of .mpuc streams with a signed manifest
# of their SHA-256 digests, checked from end to end by mpu unpack before a
# single file lands on the other side.
#
#   server: keygen, perturb, split, pack        -> usb/to-client.tar
#   client: unpack, unlearn each copy, pack     -> usb/to-server.tar
#   server: unpack, invert, denoise, verify; archive the run (run.tar)
#
# The two sides exchanged their public signing keys once beforehand (also
# over the stick); each side only accepts bundles the other signed.  The
# model is the tiny one of examples/tiny, untrained, so the round takes
# seconds; examples/demo.sh shows what unlearning does to a trained one.
# examples/replay.sh replays the archived run from run.tar.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PATH="${MPU_BIN:-$here/../bin}:$PATH"
work=${1:-$(mktemp -d /tmp/mpu-airgap.XXXXXX)}
mkdir -p "$work"
work=$(cd "$work" && pwd)
server=$work/server client=$work/client usb=$work/usb
rm -rf "$server" "$client" "$usb"
mkdir -p "$server" "$client" "$usb"
step() { printf '\n== %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "once: each side makes a signing key; the public halves cross the stick"
(cd "$server" && run mpu keygen --sign -o server.sign && cp server.sign.pub "$usb/")
(cd "$client" && run mpu keygen --sign -o client.sign && cp client.sign.pub "$usb/")
cp "$usb/client.sign.pub" "$server/"
cp "$usb/server.sign.pub" "$client/"

step "server: a model, a key, two noised and reparameterized copies, packed onto the stick"
(
  cd "$server"
  run mpu init --config "$here/tiny/config.json" --seed 1 -q -o model.mpuc
  run mpu keygen -o server.key
  mkdir -p outbox
  run mpu perturb --key server.key --copies 2 --kappa 0.01 -o copies.mpuc model.mpuc
  run mpu split -o 'outbox/copy-%d.mpuc' copies.mpuc
  run mpu pack --sign-key server.sign -o "$usb/to-client.tar" outbox/copy-1.mpuc outbox/copy-2.mpuc
)

step "client: check and unpack (only what the server signed), unlearn each copy, pack the results"
(
  cd "$client"
  run mpu unpack --trust server.sign.pub -C inbox "$usb/to-client.tar"
  mkdir -p outbox
  for k in 1 2; do
    run mpu unlearn --algo npo --forget "$here/facts/forget.jsonl" --retain "$here/facts/retain.jsonl" \
      --lr 1e-3 --epochs 2 --batch 4 -q -o "outbox/returned-$k.mpuc" "inbox/copy-$k.mpuc"
  done
  run mpu pack --sign-key client.sign -o "$usb/to-server.tar" outbox/returned-1.mpuc outbox/returned-2.mpuc
)

step "server: check and unpack (only what the client signed), invert, denoise, verify"
(
  cd "$server"
  run mpu unpack --trust client.sign.pub -C back "$usb/to-server.tar"
  run mpu invert --key server.key --onto model.mpuc -o updates.mpuc back/returned-1.mpuc back/returned-2.mpuc
  run mpu denoise --key server.key --onto model.mpuc -o unlearned.mpuc updates.mpuc
  run mpu verify -p model.mpuc -p back/returned-1.mpuc -p back/returned-2.mpuc updates.mpuc
  run mpu verify -p updates.mpuc unlearned.mpuc
  # The archive of the round: every stream but the secret key, signed.
  run mpu pack --sign-key server.sign -o run.tar model.mpuc copies.mpuc outbox/copy-1.mpuc outbox/copy-2.mpuc \
    back/returned-1.mpuc back/returned-2.mpuc updates.mpuc unlearned.mpuc
  run mpu unpack --list run.tar
)

step "what crossed the air gap"
ls -l "$usb"
echo
echo "air-gapped round finished; files in $work (replay it: examples/replay.sh $server/run.tar $server/server.key)"
