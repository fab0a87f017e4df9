#!/usr/bin/env bash
# Command-line tests for dptrain: usage errors, bad input files, config override order,
# CSV/JSON output, checkpoints through the CLI, predict/eval, sweep and bench tables.
# Run by `make check` with DPTRAIN pointing at the binary; needs data/mnist.
set -u
DPTRAIN=${DPTRAIN:-build/dptrain}
DATA=${DPTRAIN_DATA:-data}/mnist
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0
fail=0

ok() { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "FAIL - $1"; }

# expect_exit STATUS PATTERN DESC -- command...: checks the exit status, that stderr is
# one line matching PATTERN (when STATUS is 2), and that nothing went to stdout.
expect_exit() {
    local want=$1 pat=$2 desc=$3
    shift 4
    "$@" >"$T/out" 2>"$T/err"
    local got=$?
    if [ "$got" -ne "$want" ]; then
        bad "$desc (exit $got, wanted $want): $(head -c 300 "$T/err")"
        return
    fi
    if [ "$want" -eq 2 ]; then
        if [ "$(wc -l <"$T/err")" -ne 1 ] || ! grep -qE "^dptrain: error: .*$pat" "$T/err"; then
            bad "$desc: stderr is not one line matching '$pat': $(cat "$T/err")"
            return
        fi
        if [ -s "$T/out" ]; then
            bad "$desc: printed to stdout on error"
            return
        fi
    fi
    ok "$desc"
}

Q="--data $DATA --quiet"

# --- help and usage --------------------------------------------------------------
for c in train eval predict bench sweep info; do
    expect_exit 0 "" "$c --help exits 0" -- "$DPTRAIN" "$c" --help
done
expect_exit 0 "" "--help exits 0" -- "$DPTRAIN" --help
expect_exit 0 "" "--version exits 0" -- "$DPTRAIN" --version
expect_exit 2 "frobnicate: unknown command" "unknown command" -- "$DPTRAIN" frobnicate
expect_exit 2 "--frob: unknown option" "unknown flag" -- "$DPTRAIN" train --frob
expect_exit 2 "--lr: missing value" "missing value" -- "$DPTRAIN" train --lr
expect_exit 2 "--lr: -1 is out of range" "negative learning rate" -- "$DPTRAIN" train $Q --lr -1
expect_exit 2 "--lr: 'fast' is not a number" "non-numeric learning rate" -- "$DPTRAIN" train $Q --lr fast
expect_exit 2 "--batch: 0 is out of range" "batch 0" -- "$DPTRAIN" train $Q --batch 0
expect_exit 2 "--dropout: 1 must be below 1" "dropout 1" -- "$DPTRAIN" train $Q --dropout 1
expect_exit 2 "--epochs: '2x' is not a whole number" "bad epochs" -- "$DPTRAIN" train $Q --epochs 2x
expect_exit 2 "--arch: the first size 100 does not match the data's 28x28 = 784 pixels" \
    "arch input mismatch" -- "$DPTRAIN" train $Q --arch 100-10
expect_exit 2 "train-labels-idx1-ubyte: label 5 of item 5 is outside the 5 classes" \
    "arch output mismatch" -- "$DPTRAIN" train $Q --arch 784-32-5
expect_exit 2 "--arch: '784--10'" "malformed arch" -- "$DPTRAIN" train $Q --arch 784--10
expect_exit 2 "--optimizer: unknown optimizer 'sgdx'" "unknown optimizer" -- "$DPTRAIN" train $Q --optimizer sgdx
expect_exit 2 "DPTRAIN_ISA: unknown kernel 'mmx'" "bad DPTRAIN_ISA" -- env DPTRAIN_ISA=mmx "$DPTRAIN" info
expect_exit 2 "DPTRAIN_SPARSE: unknown value 'yes'" "bad DPTRAIN_SPARSE" -- env DPTRAIN_SPARSE=yes "$DPTRAIN" info
expect_exit 2 "DPTRAIN_BALANCE: unknown value 'fast'" "bad DPTRAIN_BALANCE" -- env DPTRAIN_BALANCE=fast "$DPTRAIN" info
expect_exit 2 "not a data directory" "missing data directory" -- "$DPTRAIN" train --data "$T/none" --quiet
expect_exit 2 "--model: missing" "eval without a model" -- "$DPTRAIN" eval --data "$DATA"

# --- malformed data files: one line naming the file and the field, exit 2 --------
mkdata() { # DIR: a copy of data/mnist to damage
    mkdir -p "$1"
    cp "$DATA"/*-ubyte "$1"/
}
mkdata "$T/trunc"
head -c 5000 "$DATA/train-images-idx3-ubyte" >"$T/trunc/train-images-idx3-ubyte"
expect_exit 2 "trunc/train-images-idx3-ubyte: truncated" "truncated image file" -- \
    "$DPTRAIN" train --data "$T/trunc" --quiet --save "$T/trunc.safetensors"
[ -e "$T/trunc.safetensors" ] && bad "no checkpoint written on bad input" || ok "no checkpoint written on bad input"
mkdata "$T/magic"
printf 'P5\n28 28\n255\n' >"$T/magic/t10k-labels-idx1-ubyte"
expect_exit 2 "magic/t10k-labels-idx1-ubyte: bad magic" "wrong magic" -- "$DPTRAIN" train --data "$T/magic" --quiet
mkdata "$T/gz"
echo "not an idx file at all" | gzip >"$T/gz/train-labels-idx1-ubyte.gz"
rm "$T/gz/train-labels-idx1-ubyte"
expect_exit 2 "gz/train-labels-idx1-ubyte.gz: bad magic .* gzip content is not an IDX" \
    "gzip of non-IDX content" -- "$DPTRAIN" train --data "$T/gz" --quiet
mkdata "$T/count"
head -c 1008 "$DATA/t10k-labels-idx1-ubyte" >"$T/count/t10k-labels-idx1-ubyte"
printf '\x00\x00\x08\x01\x00\x00\x03\xe8' | dd of="$T/count/t10k-labels-idx1-ubyte" conv=notrunc 2>/dev/null
expect_exit 2 "count/t10k-labels-idx1-ubyte: holds 1000 labels but" "count mismatch" -- \
    "$DPTRAIN" train --data "$T/count" --quiet
mkdata "$T/label"
printf '\x0c' | dd of="$T/label/t10k-labels-idx1-ubyte" bs=1 seek=100 conv=notrunc 2>/dev/null
expect_exit 2 "label/t10k-labels-idx1-ubyte: label 12 of item 92 is outside the 10 classes" "label out of range" -- "$DPTRAIN" train --data "$T/label" --quiet --arch 784-16-10 --epochs 1
mkdir -p "$T/dir/train-images-idx3-ubyte"
cp "$DATA"/train-labels-idx1-ubyte "$DATA"/t10k-* "$T/dir/"
expect_exit 2 "is a directory" "directory instead of file" -- "$DPTRAIN" train --data "$T/dir" --quiet
mkdata "$T/empty"
: >"$T/empty/train-images-idx3-ubyte"
expect_exit 2 "file is empty" "empty file" -- "$DPTRAIN" train --data "$T/empty" --quiet

# --- config file and override order ---------------------------------------------
cat >"$T/run.conf" <<CONF
# a tiny run
arch = 784-16-10
epochs = 1
batch = 64
lr = 0.01
dropout = 0
CONF
expect_exit 0 "" "train with a config file, flags overriding it" -- \
    "$DPTRAIN" train $Q --config "$T/run.conf" --batch 16 --log "$T/run.csv" --json "$T/run.json" --eval-every 100
if grep -q '"batch": 16' "$T/run.json" && grep -q '"lr": 0.01' "$T/run.json" && grep -q '"arch": "784-16-10"' "$T/run.json"; then
    ok "command line overrides the config file, the file fills the rest"
else
    bad "override order: $(head -c 400 "$T/run.json")"
fi
printf 'epochs = 1\nspeed = 3\n' >"$T/bad.conf"
expect_exit 2 "bad.conf:2: speed: unknown option" "unknown key in a config file" -- "$DPTRAIN" train $Q --config "$T/bad.conf"
printf 'epochs = -3\n' >"$T/bad2.conf"
expect_exit 2 "bad2.conf:1: epochs: -3 is out of range" "bad value in a config file" -- "$DPTRAIN" train $Q --config "$T/bad2.conf"

# --- CSV and JSON shape ---------------------------------------------------------
if [ "$(head -1 "$T/run.csv")" = "step,epoch,train_cost,val_cost,val_accuracy,lr,seconds" ]; then
    ok "CSV header"
else
    bad "CSV header: $(head -1 "$T/run.csv")"
fi
# 6400 samples / batch 16 = 400 steps: evaluations at 100, 200, 300, 400 (epoch end)
rows=$(($(wc -l <"$T/run.csv") - 1))
[ "$rows" -eq 4 ] && ok "one CSV row per evaluation" || bad "CSV rows: $rows"
if awk -F, 'NR > 1 && (NF != 7 || $1 !~ /^[0-9]+$/ || $4 + 0 <= 0) { exit 1 }' "$T/run.csv"; then
    ok "CSV rows have 7 numeric columns"
else
    bad "CSV rows: $(cat "$T/run.csv")"
fi
if node -e 'const j = JSON.parse(require("fs").readFileSync(process.argv[1]));
  if (!j.config || !Array.isArray(j.epochs) || j.epochs.length !== 1 || !j.final ||
      !/^[0-9a-f]{16}$/.test(j.final.fingerprint) || !(j.timings.samples_per_s > 0)) process.exit(1);' "$T/run.json"; then
    ok "JSON summary shape"
else
    bad "JSON summary: $(cat "$T/run.json")"
fi

# --- summary lines, checkpoints, resume, eval, predict ---------------------------
"$DPTRAIN" train $Q --arch 784-32-10 --epochs 3 --batchnorm --save "$T/full.safetensors" >"$T/full.out" 2>&1
tail -6 "$T/full.out" | cut -d: -f1 | tr '\n' ' ' >"$T/keys"
if [ "$(cat "$T/keys")" = "train_seconds samples_per_s val_accuracy test_accuracy test_cost fingerprint " ]; then
    ok "train ends with the six summary lines"
else
    bad "summary lines: $(cat "$T/full.out")"
fi
full=$(grep '^fingerprint:' "$T/full.out")
"$DPTRAIN" train $Q --arch 784-32-10 --epochs 2 --batchnorm --threads 1 --save "$T/half.safetensors" >/dev/null 2>&1
"$DPTRAIN" train --data "$DATA" --quiet --resume "$T/half.safetensors" --epochs 3 --threads 3 >"$T/resumed.out" 2>&1
resumed=$(grep '^fingerprint:' "$T/resumed.out")
[ -n "$full" ] && [ "$full" = "$resumed" ] && ok "resumed run equals the uninterrupted one ($full)" ||
    bad "resume: '$full' vs '$resumed' $(cat "$T/resumed.out")"
expect_exit 2 "--lr: cannot be changed when resuming" "resume refuses a changed hyperparameter" -- \
    "$DPTRAIN" train $Q --resume "$T/half.safetensors" --lr 0.5
mkdata "$T/other"
printf '\x07' | dd of="$T/other/train-labels-idx1-ubyte" bs=1 seek=20 conv=notrunc 2>/dev/null
expect_exit 2 "--data: not the training set this run started on" "resume refuses other data" -- \
    "$DPTRAIN" train --data "$T/other" --quiet --resume "$T/half.safetensors" --epochs 3
"$DPTRAIN" eval --model "$T/full.safetensors" --data "$DATA" >"$T/eval.out" 2>&1
acc=$(grep '^test_accuracy:' "$T/full.out")
grep -q "^$acc\$" "$T/eval.out" && ok "eval reproduces the training run's test accuracy" ||
    bad "eval: $(cat "$T/eval.out") vs $acc"
expect_exit 0 "" "predict prints predictions" -- "$DPTRAIN" predict --model "$T/full.safetensors" --data "$DATA" --count 5
[ "$(grep -cE '^ +[0-9]+ +[0-9] +[0-9] +0\.[0-9]+' "$T/out")" -eq 5 ] && ok "predict: one line per image" || bad "predict output: $(cat "$T/out")"
expect_exit 0 "" "predict --grid writes a PNG" -- "$DPTRAIN" predict --model "$T/full.safetensors" --data "$DATA" --count 30 --grid "$T/grid.png" --quiet
# PNG signature first, and the IEND chunk with its fixed CRC last
if [ "$(head -c 8 "$T/grid.png" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] &&
    [ "$(tail -c 12 "$T/grid.png" | od -An -tx1 | tr -d ' \n')" = "0000000049454e44ae426082" ]; then
    ok "grid is a PNG"
else
    bad "grid is not a well-formed PNG"
fi
head -c 300 "$T/full.safetensors" >"$T/cut.safetensors"
expect_exit 2 "cut.safetensors: bad header length [0-9]+ \\(file has 292 bytes" "eval of a truncated checkpoint" -- "$DPTRAIN" eval --model "$T/cut.safetensors" --data "$DATA"
printf 'not a checkpoint' >"$T/junk.safetensors"
expect_exit 2 "junk.safetensors: bad header length" "eval of a junk file" -- "$DPTRAIN" eval --model "$T/junk.safetensors" --data "$DATA"

# --- the topology is the process's CPU binding (taskset, cpusets) -------------------
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    last=$(($(nproc) - 1))
    inf=$(taskset -c "$last" "$DPTRAIN" info)
    fp=$(taskset -c "$last" "$DPTRAIN" train $Q --epochs 1 --arch 784-20-10 2>"$T/err" | grep '^fingerprint:')
    echo "$inf" | grep -q '^topology: .* 1 core(s), 1 hardware thread(s)' &&
        echo "$inf" | grep -q '^default_threads: 1 ' && [ -n "$fp" ] && ! [ -s "$T/err" ] &&
        ok "a run confined to one processor (taskset) sees one core and stays on it" ||
        bad "taskset -c $last: $(echo "$inf" | grep -E '^(topology|default_threads)') $(cat "$T/err")"
else
    ok "taskset check skipped (no taskset or one processor)"
fi

# --- the same weights whichever SIMD kernel the machine has -----------------------
if "$DPTRAIN" info | grep -q '^kernels_supported: avx512 avx2'; then
    f512=$(DPTRAIN_ISA=avx512 "$DPTRAIN" train $Q --epochs 1 --batchnorm | grep '^fingerprint:')
    f2=$(DPTRAIN_ISA=avx2 "$DPTRAIN" train $Q --epochs 1 --batchnorm | grep '^fingerprint:')
    [ -n "$f512" ] && [ "$f512" = "$f2" ] && ok "AVX2 and AVX-512 train bitwise the same weights" ||
        bad "AVX2 vs AVX-512: '$f2' vs '$f512'"
else
    ok "AVX2 vs AVX-512 comparison skipped (this CPU lacks one of them)"
fi
if "$DPTRAIN" info | grep -q '^kernel: avx512'; then
    "$DPTRAIN" info | grep -q '^sparse_products: yes' &&
        DPTRAIN_SPARSE=0 "$DPTRAIN" info | grep -q '^sparse_products: no (DPTRAIN_SPARSE=0)' &&
        DPTRAIN_SPARSE=dz "$DPTRAIN" info | grep -q '^sparse_products: yes, forced: every first-layer gradient' &&
        DPTRAIN_ISA=avx2 "$DPTRAIN" info | grep -q '^sparse_products: no (needs the avx512' &&
        ok "info reports whether the products skip zeros" ||
        bad "info: sparse_products line wrong"
else
    ok "sparse_products report skipped (no AVX-512 kernel here)"
fi
# the first layer skips zero pixels where that pays (wide and narrow layers alike)
for a in "--arch 784-128-64-10" "--arch 784-20-7-5-10 --optimizer sgd --batch 64"; do
    fs=$("$DPTRAIN" train $Q --epochs 1 $a --threads 2 | grep '^fingerprint:')
    fd=$(DPTRAIN_SPARSE=0 "$DPTRAIN" train $Q --epochs 1 $a --threads 2 | grep '^fingerprint:')
    [ -n "$fs" ] && [ "$fs" = "$fd" ] && ok "sparse and dense first layers train the same weights ($a)" ||
        bad "DPTRAIN_SPARSE=0 changes the weights ($a): '$fd' vs '$fs'"
done
# the threads' parts planned anew every 8 steps (here at random) leave the weights alone
f1=$(DPTRAIN_BALANCE=off "$DPTRAIN" train $Q --epochs 1 --batch 50 --threads 1 | grep '^fingerprint:')
fr=$(DPTRAIN_BALANCE=shuffle "$DPTRAIN" train $Q --epochs 1 --batch 50 --threads 3 | grep '^fingerprint:')
[ -n "$f1" ] && [ "$f1" = "$fr" ] && ok "plans changing every 8 steps train the one-thread weights" ||
    bad "DPTRAIN_BALANCE=shuffle changes the weights: '$fr' vs '$f1'"
# --threads auto (the default) trains chunks on 2 threads and on 1, here at random; above
# batch 1024 it keeps the full team (threads_mean equals threads)
fa=$(DPTRAIN_ADAPT=shuffle "$DPTRAIN" train $Q --epochs 1 --batch 50 --threads auto)
fd=$("$DPTRAIN" train $Q --epochs 1 --batch 50)
fa1=$(echo "$fa" | grep '^fingerprint:')
[ -n "$fa1" ] && [ "$fa1" = "$f1" ] && [ "$(echo "$fd" | grep '^fingerprint:')" = "$f1" ] &&
    echo "$fa" | grep -qE '^threads_mean: [0-9]+\.[0-9]{2}$' &&
    echo "$fd" | grep -qE '^threads_mean: ' &&
    ! "$DPTRAIN" train $Q --epochs 1 --batch 50 --threads 2 | grep -q '^threads_mean:' &&
    [ "$(DPTRAIN_ADAPT=shuffle "$DPTRAIN" train $Q --epochs 2 --batch 1100 | sed -n 's/^threads: \([0-9]*\)$/\1.00/p; s/^threads_mean: //p' | uniq | wc -l)" = 1 ] &&
    ok "--threads auto trains the one-thread weights and reports its mean thread count" ||
    bad "--threads auto: '$fa1' vs '$f1'; $(echo "$fa" | grep threads)"
expect_exit 2 "--threads: bench measures the counts it is given" "bench --threads auto" -- "$DPTRAIN" bench --data "$DATA" --threads auto
expect_exit 2 "--threads: 'many' is not" "train --threads many" -- "$DPTRAIN" train $Q --threads many

# --- sweep and bench -------------------------------------------------------------
expect_exit 0 "" "sweep over two batch sizes" -- "$DPTRAIN" sweep $Q --arch 784-16-10 --epochs 1 --vary batch=32,64 --table "$T/sweep.md"
if [ "$(grep -c '^| ' "$T/sweep.md")" -eq 3 ] && grep -q '^|---' "$T/sweep.md" && grep -q '^| batch ' "$T/sweep.md" && grep -q '^| 64 ' "$T/sweep.md"; then
    ok "sweep table: header, rule and one row per value"
else
    bad "sweep table: $(cat "$T/sweep.md")"
fi
expect_exit 2 "--vary: unknown hyperparameter 'colour'" "sweep of an unknown name" -- "$DPTRAIN" sweep $Q --vary colour=1,2
expect_exit 0 "" "bench on 1 and 2 threads" -- "$DPTRAIN" bench --data "$DATA" --threads 1,2 --steps 20 --json "$T/bench.json"
# a build without OpenMP runs (and reports) one thread whatever is asked
tmax=2
"$DPTRAIN" info | grep -q '^openmp: yes' || tmax=1
if grep -qE "^ +$tmax +[0-9]+ +[0-9.]+x" "$T/out" && grep -q "\"threads\": $tmax" "$T/bench.json" &&
    grep -qE "\"sparse\": \"(auto|off)\"" "$T/bench.json"; then
    ok "bench table and JSON"
else
    bad "bench output: $(cat "$T/out")"
fi
# the cross-core round trip: a time on two cores with OpenMP, -1 (and no line) else
cores=$("$DPTRAIN" info | sed -n 's/^default_threads: \([0-9]*\).*/\1/p')
if [ "$tmax" = 2 ] && [ "${cores:-1}" -ge 2 ]; then
    grep -qE '^# cross-core round trip: [0-9]+ ns before the runs, [0-9]+ ns after$' "$T/out" &&
        grep -qE '"roundtrip_ns": \[[0-9]+\.[0-9], [0-9]+\.[0-9]\]' "$T/bench.json" &&
        "$DPTRAIN" info | grep -qE '^cross_core_round_trip_ns: [1-9][0-9]* ' &&
        ok "bench and info report the cross-core round trip" ||
        bad "round trip: $(grep 'round trip' "$T/out") $(grep -o '"roundtrip_ns": [^]]*]' "$T/bench.json")"
    # one thread's runs alternate between the two cores, each core's median shown
    grep -qE "^# one thread ran on cores 0..1 in turn; each core's median: [0-9]+ [0-9]+$" "$T/out" &&
        ok "bench runs one thread on each core in turn" ||
        bad "one thread's cores: $(grep -i 'one thread' "$T/out")"
else
    grep -q '"roundtrip_ns": \[-1.0, -1.0\]' "$T/bench.json" && ! grep -q 'round trip' "$T/out" &&
        ok "one core or no OpenMP: no round trip reported" || bad "round trip with one core: $(cat "$T/bench.json")"
fi

# --- benchmark scripts (argument checks and one tiny comparison) -----------------
if AB_DATA=$DATA bench/ab 2 "--epochs 1 --arch 784-16-10 --batch 64" "$DPTRAIN" "$DPTRAIN" >"$T/ab" 2>&1 &&
    [ "$(grep -cE '^.*dptrain: median [0-9]+  best [0-9]+  runs: [0-9]+ [0-9]+$' "$T/ab")" -eq 2 ]; then
    ok "bench/ab compares two builds"
else
    bad "bench/ab: $(cat "$T/ab")"
fi
if AB_MODE=bench AB_DATA=$DATA bench/ab 2 "--threads 1 --steps 3 --warmup 1 --arch 784-16-10 --batch 64" \
    "$DPTRAIN" >"$T/ab" 2>&1 &&
    grep -qE '^.*dptrain: median [0-9]+  best [0-9]+  runs: [0-9]+ [0-9]+$' "$T/ab"; then
    ok "bench/ab AB_MODE=bench compares steady-state steps"
else
    bad "bench/ab AB_MODE=bench: $(cat "$T/ab")"
fi
if ! AB_MODE=sprint bench/ab 1 "" "$DPTRAIN" >/dev/null 2>"$T/err" &&
    grep -q "AB_MODE: 'sprint'" "$T/err"; then
    ok "bench/ab refuses an unknown AB_MODE"
else
    bad "bench/ab AB_MODE=sprint: $(cat "$T/err")"
fi
if ! bench/ab 0 "" "$DPTRAIN" >/dev/null 2>"$T/err" && grep -q "REPS: '0'" "$T/err"; then
    ok "bench/ab refuses 0 repetitions"
else
    bad "bench/ab 0: $(cat "$T/err")"
fi
if ! bench/peers/run --rounds two >/dev/null 2>"$T/err" && grep -q "rounds: 'two'" "$T/err"; then
    ok "bench/peers/run refuses a bad --rounds"
else
    bad "peers --rounds two: $(cat "$T/err")"
fi

echo "cli: $pass passed, $fail failed"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
