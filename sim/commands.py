"""Sub-commands beyond ``train``; each ``register(sub)`` adds one parser."""


def _flow(sub):
    p = sub.add_parser("flow", help="the main job end to end: train -> export -> eval -> generate -> cosim")
    p.add_argument("--data", default="digits")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--wq", default="post")
    p.add_argument("--aq", default="asq")
    p.add_argument("--wbits", type=int, default=4)
    p.add_argument("--abits", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)

    def run(a):
        from .flow import print_summary, run_flow

        print_summary(run_flow(a.data, a.out, a.epochs, a.wq, a.aq, a.wbits, a.abits, a.seed))
        return 0

    p.set_defaults(func=run)


REGISTER = [_flow]
