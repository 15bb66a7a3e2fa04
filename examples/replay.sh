#!/usr/bin/env bash
# replay.sh [BUNDLE KEY [TRUST.pub]] -- replays an archived MPU round from its bundle.
#
# A round's archive (mpu pack of its streams, as examples/airgap.sh makes
# run.tar) holds the model, the copies sent out, the copies that came back,
# the updates and the next model -- everything but the server's secret key.
# Given the key, this script unpacks the archive (checking every digest, and
# with TRUST.pub the archive's signature), reads each server stage's
# parameters from the streams' own provenance, runs perturb, split, invert
# and denoise again, and compares every stream they write with the archived
# one, byte for byte (spec/protocol.md, "Reproducibility").  The client's
# streams (unlearn) are inputs here, not replayed: they came from the
# client's data.
#
# Without arguments it first runs examples/airgap.sh in a temporary
# directory and replays the archive that makes.  REPLAY_DIR: where to work
# (default: a new directory in /tmp).  Streams must have been
# written with mpu's default encoding (level, chunk size), which is not part
# of a stream's provenance.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PATH="${MPU_BIN:-$here/../bin}:$PATH"
PY=${PYTHON:-python3}
work=${REPLAY_DIR:-$(mktemp -d /tmp/mpu-replay.XXXXXX)}
mkdir -p "$work"
work=$(cd "$work" && pwd)
if [ $# -eq 0 ]; then
  src=$work/airgap
  echo "== examples/airgap.sh $src: a round to archive"
  "$here/airgap.sh" "$src" >/dev/null 2>&1
  set -- "$src/server/run.tar" "$src/server/server.key" "$src/server/server.sign.pub"
fi
[ $# -ge 2 ] || { echo "usage: $0 [BUNDLE KEY [TRUST.pub]]" >&2; exit 2; }
bundle=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
key=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
trust=()
[ $# -ge 3 ] && trust=(--trust "$(cd "$(dirname "$3")" && pwd)/$(basename "$3")")
cd "$work"
rm -rf archived replayed
run() { printf '$ %s\n' "$*"; "$@"; }

echo "== the archive, checked"
run mpu unpack "${trust[@]}" -q -C archived "$bundle"
mpu unpack --list --json "$bundle" >manifest.json

# The plan, from the manifest and each stream's header: shell assignments.
for f in archived/*; do mpu inspect --json "$f" | head -n 1 >"$f.header.json"; done
eval "$("$PY" - <<'PY'
import json, glob, shlex
m = json.load(open("manifest.json"))
files = {f["name"]: f["stream"] for f in m["files"]}
by_id = {s["stream_id"]: n for n, s in files.items()}
stage = lambda st: sorted(n for n, s in files.items() if s.get("stage") == st)
header = lambda n: json.load(open(f"archived/{n}.header.json"))["header"]
def one(st):
    names = stage(st)
    if len(names) != 1: raise SystemExit(f"echo 'replay: the archive holds {len(names)} {st} streams, not one' >&2; exit 1")
    return names[0]
perturb, invert, denoise = one("perturb"), one("invert"), one("denoise")
rec = header(perturb)["mpu"]
if rec.get("base") is not None or rec["alphas"] == "list":
    raise SystemExit("echo 'replay: a round with --base or --alphas LIST needs them again; not replayed here' >&2; exit 1")
inv_parents = [by_id[p["stream_id"]] for p in files[invert]["parents"]]
model, returned = inv_parents[0], inv_parents[1:]
params = header(denoise)["stage"]["params"]
splits = {files[n]["copy"]: n for n in stage("split")}
out = {
    "model": model, "perturb": perturb, "invert": invert, "denoise": denoise,
    "perturb_opts": f"--copies {rec['copies']} --kappa {rec['kappa']!r} --round {rec['round']} "
                    f"--alphas {rec['alphas']} --scope {rec['scope']} --dtype {rec['dtype']}",
    "denoise_opts": f"--aggregate {params.get('aggregate', 'harmonic')} --eta {params.get('eta', 1.0)!r}",
}
for k, v in out.items(): print(f"{k}={shlex.quote(v)}")
print("returned=(" + " ".join(shlex.quote("archived/" + r) for r in returned) + ")")
print("splits=(" + " ".join(f"[{k}]={shlex.quote(v)}" for k, v in sorted(splits.items())) + ")" if splits else "splits=()")
PY
)"

echo "== the server's stages again, with the key"
mkdir replayed
# shellcheck disable=SC2086  # the options are words
run mpu perturb --key "$key" $perturb_opts -q -o "replayed/$perturb" "archived/$model"
run mpu split -q -o 'replayed/split-%d.mpuc' "replayed/$perturb"
run mpu invert --key "$key" --onto "archived/$model" -q -o "replayed/$invert" "${returned[@]}"
# shellcheck disable=SC2086
run mpu denoise --key "$key" --onto "archived/$model" $denoise_opts -q -o "replayed/$denoise" "replayed/$invert"

echo "== every server-side stream, bit for bit"
same() { cmp "$1" "$2" && printf '%-18s identical (%s bytes)\n' "$(basename "$2")" "$(stat -c %s "$2")"; }
same "replayed/$perturb" "archived/$perturb"
for k in "${!splits[@]}"; do same "replayed/split-$k.mpuc" "archived/${splits[$k]}"; done
same "replayed/$invert" "archived/$invert"
same "replayed/$denoise" "archived/$denoise"
echo "replayed; files in $work"
