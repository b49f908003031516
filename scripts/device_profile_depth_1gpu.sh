#!/usr/bin/env bash
# One GPU: where the time that depth adds to a decode step goes, 8B Q4_0. Kernel times over 32
# steps (scripts/profile_step.py, LLAMATP_PDL=0: each kernel's own time) after a 64-token prompt in
# a 192-position cache and after an 8192-token prompt in an 8320-position one, with the default
# (bf16) and the q4_0 cache.
set -uo pipefail
source scripts/device_env.sh
export LLAMATP_WATCHDOG=150
nvidia-smi --query-gpu=name --format=csv,noheader | uniq -c
[ -f $M/8b-q4_0.gguf ] || $L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null
profile() {  # label, then profile_step.py arguments
  step "profile $1, LLAMATP_PDL=0"; shift
  LLAMATP_PDL=0 timeout -k 5 150 python3 scripts/profile_step.py $M/8b-q4_0.gguf --devices cuda:0 --mode none \
    --n-decode 32 "$@" 2>&1 | grep -v "Warning\|warn" | sed -n '/--- decode/,$p' | cut -c1-61,110-200
}
for cache in bf16 q4_0; do
  profile "$cache cache, depth 64" --n-prompt 64 --ctx 192 --cache-type $cache
  profile "$cache cache, depth 8192" --n-prompt 8192 --ctx 8320 --cache-type $cache
done
step done
