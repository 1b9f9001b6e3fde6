"""The pruning calls a user writes first, as issue 11 reported them, with the README's two.

Residual CNN (stem + 3 stages x 2 residual blocks, 16/32/64, BN momentum 0.9), 8,000 training
digits (validation_split=0.1 for the guard), 2,000 held-out digits, 4 epochs, batch 64, Adam 2e-3,
one seed. Prints a markdown table: held-out accuracy after `strip`, MACs removed, held-out
inference-mode accuracy after each epoch, and FuPruner's warnings.

Run:  python benchmarks/fupruner_user_calls.py      (about 10 minutes alone on 2 cores)
"""
import warnings
import keras, numpy as np
import tfm_fuse
from tfm_fuse import callbacks
from tfm_fuse.app.models import residual_cnn

(x, y), (xt, yt) = tfm_fuse.app.data.load_mnist(n_train=8000, n_test=2000)
acc = lambda m: float(np.mean(np.argmax(m.predict(xt, verbose=0, batch_size=500), -1) == yt))

class Held(keras.callbacks.Callback):
    def __init__(self): super().__init__(); self.v = []
    def on_epoch_end(self, e, logs=None): self.v.append(acc(self.model))

def run(prune_kw, cb_kw, seed=0):
    keras.utils.set_random_seed(seed)
    m = residual_cnn(widths=(16, 32, 64), blocks_per_stage=2)
    full = tfm_fuse.profile(m).macs
    masked = tfm_fuse.prune(m, method="fupruner", **prune_kw) if prune_kw is not None else m
    masked.compile(keras.optimizers.Adam(2e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    held = Held()
    cbs = [callbacks.FuPruner(**cb_kw), held] if prune_kw is not None else [held]
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        masked.fit(x, y, validation_split=0.1, epochs=4, batch_size=64, verbose=0, callbacks=cbs)
    small = tfm_fuse.strip(masked) if prune_kw is not None else masked
    said = [str(i.message)[:110] for i in w if "FuPruner" in str(i.message)]
    return acc(small), 1 - tfm_fuse.profile(small).macs / full, held.v, said

rows = [("unpruned baseline", None, {}),
        ('prune(m, method="fupruner", rate=0.5) + FuPruner()', {"rate": 0.5}, {}),
        ('same, scope="layer", criterion="l1"', {"rate": 0.5, "scope": "layer", "criterion": "l1"}, {}),
        ("same, FuPruner(update_freq=40)", {"rate": 0.5}, {"update_freq": 40}),
        ("same, FuPruner(max_drop=0.01)", {"rate": 0.5}, {"max_drop": 0.01}),
        ('prune(m, method="fupruner") + FuPruner() (defaults: macs=0.5)', {}, {}),
        ('prune(m, method="fupruner") + FuPruner(max_drop=0.01)', {}, {"max_drop": 0.01})]
print("| how it was called | held-out accuracy after `strip` | MACs removed | inference-mode accuracy after each epoch |")
print("|---|---|---|---|")
for name, pk, ck in rows:
    a, macs, curve, said = run(pk, ck)
    print(f"| {name} | {a:.3f} | {macs:.0%} | {' / '.join(f'{v:.3f}' for v in curve)} |", flush=True)
    for s in said: print(f"|   warning: {s} | | | |")
