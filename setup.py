"""Packaging for art-ext, a plugin for the Adversarial Robustness Toolbox."""

import os

from setuptools import find_packages, setup

here = os.path.abspath(os.path.dirname(__file__))
with open(os.path.join(here, "art_ext", "_version.py"), encoding="utf-8") as f:
    version = f.read().split("=")[1].strip().strip('"')
with open(os.path.join(here, "README.md"), encoding="utf-8") as f:
    long_description = f.read()

# torch and TensorFlow are extras, never hard requirements; CI pins torch through .ci/constraints.txt.
# [tensorflow] pulls the full TensorFlow (CUDA support on Linux); [tensorflow-cpu] the CPU-only build that CI tests.
extras = {
    "torch": ["torch>=2.1"],
    "tensorflow": ["tensorflow>=2.16"],
    "tensorflow-cpu": ["tensorflow-cpu>=2.16"],
    "docs": ["sphinx>=7"],
    "test": ["pytest>=7", "nbmake>=1.5", "ipykernel", "hypothesis>=6"],
    # what the scripts of benchmarks/ need beyond the library: statsmodels for the Clopper-Pearson bound of ART's
    # randomized smoothing certify (benchmarks/lmt_mnist.py's smoothing rows); no test needs it
    "bench": ["statsmodels>=0.14"],
}
extras["all"] = sorted({req for name in ("torch", "tensorflow", "docs", "test", "bench") for req in extras[name]})

setup(
    name="art-ext",
    version=version,
    description="Data-free extraction, Lipschitz certification, VAT and distillation analysis for IBM's ART",
    long_description=long_description,
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["art_ext", "art_ext.*"]),
    install_requires=[
        "adversarial-robustness-toolbox>=1.20,<1.21",
        "numpy>=1.24",
        "scikit-learn>=1.2",
        "tqdm>=4.60",
        "matplotlib>=3.6",
        "multiprocess>=0.70",  # ART's AutoAttack imports it (the audit's robustness section runs AutoAttack)
    ],
    extras_require=extras,
    entry_points={"console_scripts": ["art-ext=art_ext.cli.main:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Intended Audience :: Science/Research",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Topic :: Security",
    ],
)
