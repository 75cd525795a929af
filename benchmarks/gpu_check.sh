#!/usr/bin/env bash
# One prepared GPU check (at most ~8 minutes), for a session that is lent a GPU machine:
#   bash benchmarks/gpu_check.sh
# 1. the CUDA path of the tests (tests/test_cuda.py: cuda vs cpu, AMP bf16 and fp16, the contrastive step,
#    the transfer stages, pinned real-data batches through the resized cache);
# 2. the contrastive module benchmark on cuda;
# 3. 20 iterations of table6's method at the paper's shapes (DeepLabv2-ResNet101, 512x512 crops,
#    batch 5 labelled + 5 unlabelled) on the embedded world, bf16, with its time per step.
# Everything it prints is the report. Nothing is installed or downloaded: the GPU machine's own
# torch runs this checkout through PYTHONPATH. A local checkout of the contrastive release (never
# committed) at benchmarks/out/SemiSeg-Contrastive adds the comparison against its functions.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"

echo "== 1. CUDA tests"
timeout 180 python -m pytest -q tests/test_cuda.py -p no:cacheprovider

echo "== 2. contrastive module on cuda"
release=()
[ -f benchmarks/out/SemiSeg-Contrastive/contrastive_losses.py ] && release=(--release benchmarks/out/SemiSeg-Contrastive)
timeout 120 python benchmarks/contrastive.py --device cuda --repeat 20 "${release[@]}"

echo "== 3. table6's method at paper shapes, 20 iterations, bf16"
timeout 240 python -m unisemi train --config contrastive_city \
    --set train.device=cuda --set train.amp=bf16 --set train.progress=false \
    --set model.encoder=resnet101 --set model.head=aspp --set data.size=[512,512] \
    --set data.batch_size=5 --set data.unlabelled_batch_size=5 --set data.val_images=10 \
    --set train.iterations=20 --set train.eval_every=20 --set contrastive.warmup=10 \
    --set contrastive.proj_dim=256 --set contrastive.attention_hidden=256
