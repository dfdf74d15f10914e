"""Demo scans for machines without ../shared/data/mri: the MNI152 T1 template that the nilearn
wheel carries (no download), resampled and given a few simulated artifacts with TorchIO."""

from __future__ import annotations

from pathlib import Path

ARTIFACTS = {
    'clean': None,
    'ghosting': ('RandomGhosting', {'num_ghosts': (4, 6), 'intensity': (0.6, 0.9)}),
    'motion': ('RandomMotion', {'degrees': 8, 'translation': 8, 'num_transforms': 3}),
    'bias-field': ('RandomBiasField', {'coefficients': 0.8}),
    'noise': ('RandomNoise', {'std': (0.08, 0.12)}),
    'spike': ('RandomSpike', {'num_spikes': 2, 'intensity': (1.5, 2.5)}),
}


def generate(out_dir: Path, seed: int = 7) -> list[Path]:
    """Write one .nii.gz per entry of ARTIFACTS into ``out_dir`` and return their paths."""
    import numpy as np
    import torch
    import torchio as tio
    from nilearn.datasets import load_mni152_template

    torch.manual_seed(seed)
    template = load_mni152_template(resolution=1)
    data = np.asarray(template.get_fdata(), dtype=np.float32)[None]
    base = tio.ScalarImage(tensor=torch.from_numpy(data), affine=template.affine)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, spec in ARTIFACTS.items():
        image = base
        if spec is not None:
            transform = getattr(tio, spec[0])(**spec[1])
            image = transform(tio.Subject(t1=base))['t1']
        path = out_dir / f'mni152-demo_{name}_T1w.nii.gz'
        image.save(path)
        paths.append(path)
    return paths


if __name__ == '__main__':
    import sys

    for p in generate(Path(sys.argv[1] if len(sys.argv) > 1 else 'demo-scans')):
        print(p)
