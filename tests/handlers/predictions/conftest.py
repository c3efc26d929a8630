"""The CDNOW sample of the BG/NBD paper, shared by the model tests and the end-to-end
test through `stormd import` and `stormd clv fit`.

The sample (2,357 customers who first bought in the first quarter of 1997, one row per
order: master id, sample id, YYYYMMDD, CDs, dollars) ships as a data file in the
MIT-licensed `lifetimes` wheel on PyPI. The fixture downloads that one wheel with
`pip download --no-deps` into pytest's cache (once per machine), checks the file's SHA-256
and reads it out of the zip: no lifetimes code is installed or imported, and the test
extra does not carry lifetimes' own dependencies (pandas, autograd, dill). Without network
the CDNOW tests skip, except under CI=true where they fail.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

LIFETIMES = "0.11.3"
MEMBER = "lifetimes/datasets/CDNOW_sample.txt"
SAMPLE_SHA256 = "6fae10155c0b0ba363c2c386e30f77990d22328220efd862a5edd1443420d94a"


def _fetch_wheel(cache: Path) -> Path:
    found = sorted(cache.glob(f"[Ll]ifetimes-{LIFETIMES}-*.whl"))
    if found:
        return found[0]
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    "--disable-pip-version-check", "-q", f"lifetimes=={LIFETIMES}",
                    "-d", str(cache)], check=True, capture_output=True, timeout=300)
    return sorted(cache.glob(f"[Ll]ifetimes-{LIFETIMES}-*.whl"))[0]


@pytest.fixture(scope="session")
def cdnow_sample(request) -> Path:
    """Path of CDNOW_sample.txt, extracted from the lifetimes wheel (checked by SHA-256)."""
    # pytest's cache when it is on; else the repository's own (gitignored) .cache/
    cache = (Path(request.config.cache.mkdir("cdnow")) if hasattr(request.config, "cache")
             else Path(request.config.rootpath) / ".cache" / "cdnow")
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / "CDNOW_sample.txt"
    if not target.exists() or hashlib.sha256(target.read_bytes()).hexdigest() != SAMPLE_SHA256:
        try:
            data = zipfile.ZipFile(_fetch_wheel(cache)).read(MEMBER)
        except (subprocess.SubprocessError, OSError, IndexError, KeyError) as exc:
            if os.environ.get("CI") == "true":
                pytest.fail(f"CDNOW sample unavailable under CI=true: {exc!r}")
            pytest.skip(f"CDNOW sample unavailable (no network to PyPI?): {exc!r}")
        assert hashlib.sha256(data).hexdigest() == SAMPLE_SHA256, "CDNOW sample changed"
        target.write_bytes(data)
    return target


@pytest.fixture(scope="session")
def cdnow(cdnow_sample):
    """(sample id, day number, dollars) per order row."""
    table = np.loadtxt(io.BytesIO(cdnow_sample.read_bytes()), usecols=(1, 2, 4))
    ymd = table[:, 1].astype(np.int64)
    dates = np.array([f"{d // 10000:04d}-{d // 100 % 100:02d}-{d % 100:02d}" for d in ymd],
                     dtype="datetime64[D]")
    return table[:, 0].astype(np.int64), dates.astype(np.int64), table[:, 2]
