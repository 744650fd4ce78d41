#!/usr/bin/env python
"""Train or distil a zoo / timm model: a thin command line over ``zoo.train``.

    python train.py                                   # embedded digits run (GhostNet, CPU, a few minutes)
    python train.py -c configs/train/ghostnetv3_kd.yaml --data-dir /data/imagenet --teacher-checkpoint t.pth
    torchrun --nproc_per_node 2 train.py ...          # distributed data parallel
    python train.py --help                            # every option
"""
import sys

from zoo.train import main

if __name__ == '__main__':
    sys.exit(main())
