"""A chain that makes every kind of event (the step's own log levels, a retry, a group, a
failure), shared by the tests of what shippers and viewers receive."""

MODULE = """
    import sys

    def talk(ctx):
        print("plain stdout", ctx.input)
        print("plain stderr", file=sys.stderr)
        ctx.log.debug("a debug line")
        ctx.log.info("an info line", n=1)
        ctx.log.warning("a warning line")
        ctx.log.warn("a warn line")
        ctx.log.error("an error line")
        ctx.log.critical("a critical line")
        ctx.progress(0.5, "halfway")
        ctx.progress(1.0)
        return "ok"

    def flaky(ctx):
        marker = ctx.chain_dir / "flaky.marker"
        if not marker.exists():
            marker.write_text("x")
            raise RuntimeError("first attempt fails")
        return "second"

    def boom(ctx):
        raise ValueError("it went wrong")
"""

CHAIN = """
    name: shipping
    prompt: hello
    retry_delay: 0.01
    steps:
      - {type: python, name: talk, params: {function: "shipmod:talk"}}
      - {type: python, retry_count: 1, params: {function: "shipmod:flaky"}}
      - type: parallel_group
        params:
          parallel_steps:
            - {type: command, params: {argv: [echo, one]}}
            - {type: command, params: {argv: [echo, two]}}
      - {type: python, params: {function: "shipmod:boom"}}
"""
