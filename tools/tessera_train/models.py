"""The networks a run config names, built from a torch-like module `T` (tessera or torch)."""


def build_model(T, model):
    """nn.Module for config section `model` (see config.py); input (N,784) for "mlp",
    (N,1,28,28) for "cnn"; output (N,10) logits."""
    nn = T.nn
    layers = []
    if model["type"] == "mlp":
        sizes = model["sizes"]
        for i in range(len(sizes) - 1):
            layers.append(nn.Linear(sizes[i], sizes[i + 1]))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
                if model["dropout"] > 0:
                    layers.append(nn.Dropout(model["dropout"]))
        return nn.Sequential(*layers)
    # cnn: per channel count a block conv(k, same padding) + relu + maxpool(2), then
    # flatten + linear(hidden) + relu + dropout + linear(10).
    k, side, cin = model["kernel_size"], 28, 1
    for cout in model["channels"]:
        layers += [nn.Conv2d(cin, cout, k, padding=k // 2), nn.ReLU(), nn.MaxPool2d(2)]
        cin, side = cout, side // 2
    layers += [nn.Flatten(), nn.Linear(cin * side * side, model["hidden"]), nn.ReLU()]
    if model["dropout"] > 0:
        layers.append(nn.Dropout(model["dropout"]))
    layers.append(nn.Linear(model["hidden"], 10))
    return nn.Sequential(*layers)


def input_shape(model):
    """Shape of one sample as the model takes it."""
    return (784,) if model["type"] == "mlp" else (1, 28, 28)


def build_optimizer(T, opt, params):
    if opt["name"] == "sgd":
        return T.optim.SGD(params, lr=opt["lr"], momentum=opt["momentum"],
                           weight_decay=opt["weight_decay"], nesterov=opt["nesterov"])
    cls = T.optim.AdamW if opt["name"] == "adamw" else T.optim.Adam
    return cls(params, lr=opt["lr"], betas=tuple(opt["betas"]), eps=opt["eps"],
               weight_decay=opt["weight_decay"])


def build_scheduler(T, sched, optimizer, steps_per_epoch, epochs):
    """The LR schedule, stepped once per batch (StepLR's step_size is in epochs); None for "none"."""
    if sched["name"] == "cosine":
        return T.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps_per_epoch * epochs,
                                                      eta_min=sched["eta_min"])
    if sched["name"] == "step":
        return T.optim.lr_scheduler.StepLR(optimizer, step_size=steps_per_epoch * sched["step_size"],
                                           gamma=sched["gamma"])
    return None
