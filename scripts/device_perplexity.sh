#!/usr/bin/env bash
# One GPU: `llamatp perplexity` over 16 chunks of 512 tokens of an 8B Q4_0 file, with prompt
# graphs (each chunk's passes replayed) and without, then one `llamatp run` completion.
set -uo pipefail
source scripts/device_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader
$L synth llama3-8b -t q4_0 --vocab $V -o $M/8b-q4_0.gguf 2>/dev/null
python3 -c "print(' '.join(f'The keeper wrote entry {i} in the log, then climbed to the lamp and trimmed the wick.' for i in range(2000)))" > $OUT/text.txt
for graphs in 1 0; do
  step "perplexity, LLAMATP_PROMPT_GRAPHS=$graphs"
  LLAMATP_PROMPT_GRAPHS=$graphs timeout -k 5 150 $L perplexity -m $M/8b-q4_0.gguf -f $OUT/text.txt -c 512 --chunks 16 2>&1 | grep -v "^\[\|Warn" | tail -4
done
step run; timeout -k 5 100 $L run -m $M/8b-q4_0.gguf -p "The lighthouse" -n 32 --temp 0 2>&1 | tail -8
step done
