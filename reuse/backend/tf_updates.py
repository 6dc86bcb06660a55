"""TensorFlow backend: optimizer updates for the compiled loop in far fewer graph ops than Keras builds."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

# Adam: variables with at least this many elements use TensorFlow's fused kernel, which is faster on
# large tensors (one vectorised pass) and slower on small ones (measured on CPU).
BIG = 16384


class FusedUpdate:
    """The updates of Keras's SGD, RMSprop and Adam in far fewer graph ops.

    Keras's optimizers build each variable's update from many small ops; per training step on small
    data that op dispatch is much of the time. SGD and RMSprop use TensorFlow's fused
    ``ResourceApply*`` kernels (one op per variable, the formulas of Keras: momentum
    ``m = mu*m - lr*g``, RMSprop ``lr*g/sqrt(ms+eps)``); Adam updates large variables with
    ``ResourceApplyAdam`` and all small ones together as one flat vector. Slots live here: the model file
    stores no optimizer state. ``for_optimizer`` returns ``None`` for anything else (AdamW, Nadam, AMSGrad,
    centered RMSprop, EMA, gradient accumulation, non-float32 weights): those use ``optimizer.apply``.
    """

    def __init__(self, kind: str, cfg: dict[str, Any], opt: Any, variables: list[Any]) -> None:
        self.kind, self.cfg, self.opt, self.vars = kind, cfg, opt, variables
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.sizes = [int(np.prod(v.shape)) for v in variables]
        zeros = lambda vs: [tf.Variable(tf.zeros_like(v.value), trainable=False) for v in vs]  # noqa: E731
        self.slot1 = zeros(variables) if kind == "rmsprop" or cfg.get("momentum") else []
        self.slot2 = zeros(variables) if kind == "rmsprop" else []
        if kind == "adam":
            self.big = [i for i, n in enumerate(self.sizes) if n >= BIG]
            self.small = [i for i, n in enumerate(self.sizes) if n < BIG]
            self.big_m, self.big_v = (
                zeros([variables[i] for i in self.big]),
                zeros([variables[i] for i in self.big]),
            )
            flat = sum(self.sizes[i] for i in self.small)
            self.slot1 = [tf.Variable(tf.zeros([flat]), trainable=False)]
            self.slot2 = [tf.Variable(tf.zeros([flat]), trainable=False)]

    @classmethod
    def for_optimizer(cls, opt: Any, variables: list[Any]) -> FusedUpdate | None:
        import keras

        # The exact classes: a subclass (AdamW is an Adam) may change the update.
        kind = {keras.optimizers.SGD: "sgd", keras.optimizers.RMSprop: "rmsprop",
                keras.optimizers.Adam: "adam"}.get(type(opt))
        if kind is None:
            return None
        cfg = opt.get_config()
        if (cfg.get("use_ema") or cfg.get("gradient_accumulation_steps") or cfg.get("global_clipnorm")
                or cfg.get("weight_decay") or cfg.get("amsgrad") or cfg.get("centered")
                or cfg.get("loss_scale_factor") or any(v.dtype != tf.float32 for v in variables)):
            return None
        return cls(kind, cfg, opt, variables)

    def _clip(self, grads: list[Any]) -> list[Any]:
        if self.cfg.get("clipnorm"):
            return [tf.clip_by_norm(g, self.cfg["clipnorm"]) for g in grads]
        if self.cfg.get("clipvalue"):
            v = self.cfg["clipvalue"]
            return [tf.clip_by_value(g, -v, v) for g in grads]
        return grads

    def apply(self, grads: list[Any]) -> Any:
        c = self.cfg
        grads = self._clip(grads)
        lr = tf.cast(self.opt.learning_rate, tf.float32)
        handles = [v.value.handle for v in self.vars]
        ops = []
        if self.kind == "sgd" and not c["momentum"]:
            ops = [tf.raw_ops.ResourceApplyGradientDescent(var=h, alpha=lr, delta=g)
                   for h, g in zip(handles, grads, strict=True)]
        elif self.kind == "sgd":
            mu = tf.constant(c["momentum"], tf.float32)
            ops = [tf.raw_ops.ResourceApplyKerasMomentum(var=h, accum=m.handle, lr=lr, grad=g, momentum=mu,
                                                         use_nesterov=bool(c["nesterov"]))
                   for h, m, g in zip(handles, self.slot1, grads, strict=True)]
        elif self.kind == "adam":
            t = tf.cast(self.step + 1, tf.float32)
            b1, b2 = c["beta_1"], c["beta_2"]
            eps = c["epsilon"]
            if self.big:
                # Large tensors: TensorFlow's fused kernel (one vectorised pass per variable).
                p1, p2 = tf.pow(tf.constant(b1, tf.float32), t), tf.pow(tf.constant(b2, tf.float32), t)
                ops += [tf.raw_ops.ResourceApplyAdam(
                    var=self.vars[i].value.handle, m=m.handle, v=v.handle, beta1_power=p1, beta2_power=p2,
                    lr=lr, beta1=tf.constant(b1, tf.float32), beta2=tf.constant(b2, tf.float32),
                    epsilon=tf.constant(eps, tf.float32), grad=grads[i])
                    for i, m, v in zip(self.big, self.big_m, self.big_v, strict=True)]
            if self.small:
                # Small tensors: one flat update for all of them (Keras builds ~15 ops per variable).
                alpha = lr * tf.sqrt(1.0 - tf.pow(b2, t)) / (1.0 - tf.pow(b1, t))
                g = tf.concat([tf.reshape(grads[i], [-1]) for i in self.small], 0)
                m, v = self.slot1[0], self.slot2[0]
                m_new = m + (g - m) * (1.0 - b1)
                v_new = v + (tf.square(g) - v) * (1.0 - b2)
                parts = tf.split(m_new * alpha / (tf.sqrt(v_new) + eps), [self.sizes[i] for i in self.small])
                ops += [m.assign(m_new), v.assign(v_new)]
                ops += [self.vars[i].value.assign_sub(tf.reshape(p, self.vars[i].shape))
                        for i, p in zip(self.small, parts, strict=True)]
        else:
            rho, mu = tf.constant(c["rho"], tf.float32), tf.constant(c["momentum"], tf.float32)
            eps = tf.constant(c["epsilon"], tf.float32)
            ops = [tf.raw_ops.ResourceApplyRMSProp(var=h, ms=ms.handle, mom=mom.handle, lr=lr, rho=rho,
                                                   momentum=mu, epsilon=eps, grad=g)
                   for h, ms, mom, g in zip(handles, self.slot2, self.slot1, grads, strict=True)]
        with tf.control_dependencies(ops):
            return self.step.assign_add(1)
