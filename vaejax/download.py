"""Download and unpack a dataset archive (for machines with a network); checksum-verified, atomic."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile


class DownloadError(RuntimeError):
    pass


def fetch(url: str, out: str, *, sha256: str | None = None, progress: bool = True) -> str:
    """Download `url` (a .tar.gz, .tar or .zip) and unpack it into `out`; return `out`.

    Nothing is left in `out` unless the download completed, matched `sha256` (when given) and unpacked.
    """
    os.makedirs(os.path.dirname(os.path.abspath(out)) or ".", exist_ok=True)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(out))) as tmp:
        archive = os.path.join(tmp, os.path.basename(url.split("?")[0]) or "archive")
        h = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=60) as r, open(archive, "wb") as f:
                total = int(r.headers.get("Content-Length") or 0)
                bar = None
                if progress:
                    from tqdm.auto import tqdm

                    bar = tqdm(total=total or None, unit="B", unit_scale=True, desc="download")
                while chunk := r.read(1 << 20):
                    f.write(chunk)
                    h.update(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
                if bar is not None:
                    bar.close()
        except urllib.error.HTTPError as e:
            raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError) as e:
            raise DownloadError(f"{url}: {e}") from None
        if sha256 and h.hexdigest() != sha256.lower():
            raise DownloadError(f"{url}: checksum mismatch (got {h.hexdigest()}, expected {sha256})")
        staging = os.path.join(tmp, "unpacked")
        try:
            if zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as z:
                    z.extractall(staging)
            else:
                with tarfile.open(archive) as t:
                    t.extractall(staging, filter="data")  # refuses absolute paths and links outside
        except (tarfile.TarError, zipfile.BadZipFile, OSError) as e:
            raise DownloadError(f"{url}: cannot unpack ({e})") from None
        if os.path.exists(out):
            for name in os.listdir(staging):
                shutil.move(os.path.join(staging, name), os.path.join(out, name))
        else:
            shutil.move(staging, out)
    return out
