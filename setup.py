from setuptools import find_packages, setup

setup(
    name="jaxmd-efield",
    version="0.1.0",
    description="E(3)-equivariant machine-learned models for atoms in electric fields, native to JAX-MD",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["jaxmd_efield", "jaxmd_efield.*"]),
    package_data={"jaxmd_efield": ["pretrained/*"]},
    entry_points={"console_scripts": [
        "jaxmd-efield-make-data=jaxmd_efield.cli.make_data:main",
        "jaxmd-efield-train=jaxmd_efield.cli.train:cli",
        "jaxmd-efield-predict=jaxmd_efield.cli.predict:cli",
    ]},
    install_requires=[
        # 0.10.2 (the newest for Python 3.11) miscompiles on CPU (jax-ml/jax#39103; jax-md
        # excludes it too). 0.10.1 is the last good release; jax and jaxlib must match.
        "jax==0.10.1",
        "jaxlib==0.10.1",
        # Our multi-image neighbor list support follows jax_md.custom_partition as of 0.2.29.
        "jax-md==0.2.29",
        # 0.21 is the last release with e3nn_jax.haiku (Linear, MultiLayerPerceptron) and the
        # IrrepsArray API used here.
        "e3nn-jax==0.21.0",
        # e3nn_jax.haiku is silently empty without dm-haiku; 0.0.17 is the release tested
        # with jax 0.10.
        "dm-haiku==0.0.17",
        "optax>=0.2",
        "numpy>=1.26",
        "h5py>=3.10",
        "ase>=3.23",
        # GFN2-xTB reference for making data; jaxmd_efield.reference works around a cffi bug of
        # 0.8.0's field interface using its internals, so the exact version matters.
        "tblite==0.8.0",
        "pyyaml>=6",
        # phonons with the non-analytic correction; 4.x makes nac_params' `factor` mandatory and
        # takes lowercase methods, which jaxmd_efield.phonons follows.
        "phonopy>=4.10,<5",
        "tqdm>=4.60",
        "matplotlib>=3.7",
    ],
    extras_require={
        # GPU users: the CUDA 12 plugin matching the pinned jaxlib.
        "cuda": ["jax[cuda12]==0.10.1"],
        # xdist: the suite is compile-bound and XLA compiles on one core, so two workers use both
        "test": ["pytest>=8", "pytest-xdist>=3"],
    },
)
