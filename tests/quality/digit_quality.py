#!/usr/bin/env python3
"""Quality gate for the digits DDPM (models/digits).

Trains a scikit-learn classifier on sklearn's load_digits and uses it to
classify generated 16x16 samples.

Inputs (NHWC float32 in [0,1], as diffusers output_type="np"):
  --samples-cond   cond.npy    [N,16,16,1] samples generated with guidance
  --labels-cond    labels.npy | labels.json   N requested class labels (0..9)
  --samples-uncond uncond.npy  [M,16,16,1] unconditional samples (null class)

Preprocessing must match the training pipeline of scripts/train_digits.py
(8x8 0..16 -> /16 -> bilinear upsample to 16x16). A 16x16 sample in [0,1] is
mapped back to 8x8 by 2x2 average pooling and scaled by 16. The classifier is
trained on the digits after the same round trip (upsample, then pool), so
it sees exactly the representation that generated samples get.

Checks (exit 0 = pass, 1 = fail):
  * classifier held-out accuracy  >= --min-clf-acc  (0.95)
  * conditional: fraction of samples classified as their requested class
    >= --min-cond-acc (0.90) overall (per-class accuracy is printed)
  * unconditional: no class has a share above --max-uncond-share (0.30)
"""
import argparse
import json
import sys

import numpy as np


def _bilinear_taps(n_in, n_out):
    """Source indices and weights of torch's bilinear resize (align_corners=False) along one axis."""
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, None)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


def up_16(x8):
    """[N,8,8] in 0..16 -> [N,16,16] in [0,1] (same as the training data prep: F.interpolate bilinear)."""
    x = np.asarray(x8, np.float32) / 16.0
    i0, i1, w = _bilinear_taps(8, 16)
    x = x[:, i0, :] * (1 - w)[None, :, None] + x[:, i1, :] * w[None, :, None]  # rows
    x = x[:, :, i0] * (1 - w)[None, None, :] + x[:, :, i1] * w[None, None, :]  # columns
    return np.clip(x, 0.0, 1.0)


def down_8(x16):
    """[N,16,16] (or [N,16,16,1]) in [0,1] -> [N,64] in 0..16 (2x2 average pooling)."""
    x = np.asarray(x16, np.float32)
    if x.ndim == 4:
        if x.shape[-1] != 1:
            raise ValueError(f"expected 1 channel (NHWC), got shape {x.shape}")
        x = x[..., 0]
    if x.shape[1:] != (16, 16):
        raise ValueError(f"expected 16x16 samples, got shape {x.shape}")
    x = np.clip(x, 0.0, 1.0)
    x8 = x.reshape(-1, 8, 2, 8, 2).mean(axis=(2, 4))
    return (x8 * 16.0).reshape(len(x8), 64)


def load_labels(path):
    if path.endswith(".json"):
        with open(path) as f:
            lab = json.load(f)
        if isinstance(lab, dict):
            lab = lab.get("labels", lab)
        return np.asarray(lab, np.int64).reshape(-1)
    return np.load(path).astype(np.int64).reshape(-1)


def build_classifier(seed=0):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.svm import SVC

    d = load_digits()
    X = down_8(up_16(d.images))
    y = d.target
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)
    clf = SVC(C=10.0, gamma="scale")
    clf.fit(Xtr, ytr)
    acc = float((clf.predict(Xte) == yte).mean())
    # Refit on everything for classifying the generated samples.
    clf_all = SVC(C=10.0, gamma="scale").fit(X, y)
    return clf_all, acc, len(yte)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples-cond", required=True)
    ap.add_argument("--labels-cond", required=True)
    ap.add_argument("--samples-uncond", required=True)
    ap.add_argument("--min-clf-acc", type=float, default=0.95)
    ap.add_argument("--min-cond-acc", type=float, default=0.90)
    ap.add_argument("--max-uncond-share", type=float, default=0.30)
    args = ap.parse_args()

    ok = True
    clf, clf_acc, n_te = build_classifier()
    c_ok = clf_acc >= args.min_clf_acc
    ok &= c_ok
    print("== digit quality report ==")
    print(f"classifier (SVC on 2x2-pooled 8x8) held-out accuracy: {clf_acc:.4f} on {n_te} images "
          f"(need >= {args.min_clf_acc:.2f}) {'PASS' if c_ok else 'FAIL'}")

    # Conditional samples.
    xc = np.load(args.samples_cond)
    yc = load_labels(args.labels_cond)
    if len(xc) != len(yc):
        print(f"FAIL: {len(xc)} conditional samples but {len(yc)} labels")
        return 1
    stats_c = (float(np.nanmin(xc)), float(np.nanmax(xc)), int(np.isnan(xc).sum()))
    pc = clf.predict(down_8(xc))
    cond_acc = float((pc == yc).mean())
    cd_ok = cond_acc >= args.min_cond_acc and stats_c[2] == 0
    ok &= cd_ok
    print(f"\nconditional samples: {len(xc)}  shape {xc.shape}  range [{stats_c[0]:.3f}, {stats_c[1]:.3f}]  NaNs {stats_c[2]}")
    print(f"  class  n   correct  acc    predicted-as histogram (0..9)")
    for c in range(10):
        m = yc == c
        if not m.any():
            continue
        hist = np.bincount(pc[m], minlength=10)
        print(f"  {c:5d} {m.sum():3d}  {int((pc[m] == c).sum()):7d}  {float((pc[m] == c).mean()):.3f}  {' '.join(f'{h:2d}' for h in hist)}")
    print(f"  overall conditional accuracy: {cond_acc:.4f} (need >= {args.min_cond_acc:.2f}) {'PASS' if cd_ok else 'FAIL'}")

    # Unconditional samples.
    xu = np.load(args.samples_uncond)
    nan_u = int(np.isnan(xu).sum())
    pu = clf.predict(down_8(xu))
    share = np.bincount(pu, minlength=10) / max(1, len(pu))
    u_ok = float(share.max()) <= args.max_uncond_share and nan_u == 0 and len(pu) > 0
    ok &= u_ok
    print(f"\nunconditional samples: {len(xu)}  shape {xu.shape}  NaNs {nan_u}")
    print("  class share: " + "  ".join(f"{c}:{s:.2f}" for c, s in enumerate(share)))
    print(f"  max share {share.max():.3f} (class {int(share.argmax())}; need <= {args.max_uncond_share:.2f}), "
          f"classes present {int((share > 0).sum())}/10 {'PASS' if u_ok else 'FAIL'}")

    print(f"\nRESULT: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
