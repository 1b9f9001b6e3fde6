"""The README's shortest pruning call on a short fit: 3 epochs, 3,000 training digits, held-out
accuracy on 2,000 after every epoch (inference mode) and after `strip`; `rate=0.5` (a channel
rate), the README's `macs=0.5`, and the unpruned model trained the same way. One seed.

Run:  python benchmarks/short_fit.py      (about 2 minutes)
"""
import warnings, keras, numpy as np, tfm_fuse
from tfm_fuse import callbacks
(x, y), (xt, yt) = tfm_fuse.app.data.load_mnist(n_train=3000, n_test=2000)
acc = lambda m: float(np.mean(np.argmax(m.predict(xt, verbose=0, batch_size=500), -1) == yt))
for kw in (None, {"rate": 0.5}, {"macs": 0.5}):
    keras.utils.set_random_seed(0)
    m = tfm_fuse.app.models.residual_cnn(); full = tfm_fuse.profile(m).macs
    mm = m if kw is None else tfm_fuse.prune(m, method="fupruner", **kw)
    mm.compile(optimizer="adam", metrics=["accuracy"], loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    curve = []
    cb = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, l: curve.append(acc(mm)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mm.fit(x, y, validation_split=0.1, epochs=3, verbose=0, callbacks=([] if kw is None else [callbacks.FuPruner()]) + [cb])
    s = mm if kw is None else tfm_fuse.strip(mm)
    print(kw, " / ".join(f"{v:.3f}" for v in curve), f"stripped {acc(s):.3f}", f"MACs removed {1 - tfm_fuse.profile(s).macs / full:.1%}", flush=True)
