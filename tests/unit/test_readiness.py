"""The readiness state machine (pure) and its driver with scripted probes and a fake clock."""

from __future__ import annotations

import socket
import threading

import pytest

from labctl.providers import readiness as r

pytestmark = pytest.mark.unit

T = r.StepTimeouts(running=10, ssh_banner=20, logged_in=5, booted=30)


def test_steps_pass_in_order_to_ready():
    m = r.HostReadiness("h", T, started_at=100.0)
    assert m.status == r.Waiting(r.RUNNING, 110.0)
    assert m.handle(r.Passed(r.RUNNING, 101.0)) == r.Waiting(r.SSH_BANNER, 121.0)
    assert m.handle(r.Passed(r.SSH_BANNER, 115.0)) == r.Waiting(r.LOGGED_IN, 120.0)
    assert m.handle(r.Passed(r.LOGGED_IN, 116.0)) == r.Waiting(r.BOOTED, 146.0)
    done = m.handle(r.Passed(r.BOOTED, 120.0, "degraded: failed units x.service"))
    assert done == r.Ready(120.0, {r.BOOTED: "degraded: failed units x.service"})
    assert m.passed == {r.CREATED: 100.0, r.RUNNING: 101.0, r.SSH_BANNER: 115.0,
                        r.LOGGED_IN: 116.0, r.BOOTED: 120.0}


def test_each_step_gets_its_own_timeout_from_the_previous_step():
    m = r.HostReadiness("h", T, started_at=0.0)
    m.handle(r.Passed(r.RUNNING, 9.0))  # just inside running's 10 s
    assert m.handle(r.Tick(28.9)) == r.Waiting(r.SSH_BANNER, 29.0)
    assert m.handle(r.Tick(29.0)) == r.TimedOut(r.SSH_BANNER, 20.0, "no attempt finished yet")


def test_failures_are_retried_until_the_deadline_and_the_last_reason_is_kept():
    m = r.HostReadiness("h", T, started_at=0.0)
    assert isinstance(m.handle(r.Failed(r.RUNNING, 1.0, "host is stopped")), r.Waiting)
    assert isinstance(m.handle(r.Failed(r.RUNNING, 2.0, "host is missing")), r.Waiting)
    out = m.handle(r.Failed(r.RUNNING, 10.5, "host is shut off"))
    assert out == r.TimedOut(r.RUNNING, 10.5, "host is shut off")
    assert m.done


def test_a_late_pass_of_the_current_step_still_counts():
    m = r.HostReadiness("h", T, started_at=0.0)
    assert m.handle(r.Passed(r.RUNNING, 12.0)) == r.Waiting(r.SSH_BANNER, 32.0)


def test_last_reason_resets_when_a_step_passes():
    m = r.HostReadiness("h", T, started_at=0.0)
    m.handle(r.Failed(r.RUNNING, 1.0, "stopped"))
    m.handle(r.Passed(r.RUNNING, 2.0))
    assert m.handle(r.Tick(22.0)).last_reason == "no attempt finished yet"


def test_events_for_other_steps_and_after_the_end_are_errors():
    m = r.HostReadiness("h", T, started_at=0.0)
    with pytest.raises(ValueError, match="while at 'running'"):
        m.handle(r.Passed(r.SSH_BANNER, 1.0))
    m.handle(r.Tick(11.0))
    with pytest.raises(ValueError, match="already finished"):
        m.handle(r.Tick(12.0))


def test_step_timeout_overrides():
    t = r.StepTimeouts().with_overrides({"ssh-banner": 300, "booted": 5})
    assert (t.ssh_banner, t.booted, t.running) == (300.0, 5.0, r.StepTimeouts().running)
    with pytest.raises(r.LabError, match="unknown readiness step"):
        r.StepTimeouts().with_overrides({"dhcp": 3})
    with pytest.raises(r.LabError, match="positive"):
        r.StepTimeouts().with_overrides({"booted": 0})


def test_system_state_interpretation():
    assert r.interpret_system_state(0, "running\n") == (True, "running")
    assert r.interpret_system_state(1, "degraded\n") == (True, "degraded")
    assert r.interpret_system_state(1, "starting\n") == (False, "starting")
    assert r.interpret_system_state(255, "") == (False, "no answer (rc 255)")


class FakeClock:
    """Time advances only when the driver waits or a probe says it took time."""

    def __init__(self):
        self.now = 0.0
        self.lock = threading.Lock()

    def __call__(self):
        return self.now

    def advance(self, dt):
        with self.lock:
            self.now += dt


def scripted(clock, script):
    """Probes answering from ``script[step]``: a list of (seconds taken, error or None)."""

    def probe_for(step):
        def probe(target, budget):
            took, error = script[step].pop(0) if len(script[step]) > 1 else script[step][0]
            clock.advance(took)
            if error:
                raise RuntimeError(error)
            return ""

        return probe

    return {step: probe_for(step) for step in r.WAITED_STEPS}


def test_driver_walks_all_steps_and_reports_progress(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(threading.Event, "wait", lambda self, t=None: clock.advance(t or 0))
    script = {
        r.RUNNING: [(0.1, None)],
        r.SSH_BANNER: [(0.5, "refused"), (0.5, "refused"), (1.0, None)],
        r.LOGGED_IN: [(0.4, None)],
        r.BOOTED: [(2.0, None)],
    }
    lines, timeline = [], {}
    ready = r.wait_ready(
        [r.Target("n1", "10.0.0.2")], scripted(clock, script), T, progress=lines.append, clock=clock,
        timeline=timeline,
    )
    assert list(timeline["n1"]) == list(r.WAITED_STEPS)
    assert timeline["n1"][r.RUNNING] == pytest.approx(0.1)
    assert timeline["n1"][r.BOOTED] == pytest.approx(clock.now)
    assert list(ready) == ["n1"] and ready["n1"] == pytest.approx(clock.now)
    assert [line.split("] ", 1)[1] for line in lines] == [
        "n1: running", "n1: ssh banner", "n1: logged in", "n1: booted"
    ]
    assert lines[0].startswith("[  0.1s]")


def test_driver_timeout_names_host_step_reason_and_console_tail(tmp_path, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(threading.Event, "wait", lambda self, t=None: clock.advance(t or 0))
    console = tmp_path / "n1.console.log"
    console.write_text("".join(f"boot line {i}\r\n" for i in range(50)))
    script = {
        r.RUNNING: [(0.1, None)],
        r.SSH_BANNER: [(1.0, "Connection refused")],
        r.LOGGED_IN: [(0.1, None)],
        r.BOOTED: [(0.1, None)],
    }
    bad = r.Target("n1", "10.0.0.2", console_log=console)
    with pytest.raises(r.ReadinessError) as caught:
        r.wait_ready([bad], scripted(clock, script), T, progress=None, clock=clock)
    message = str(caught.value)
    assert "host n1 (10.0.0.2)" in message and "step 'ssh banner' timed out" in message
    assert "Connection refused" in message
    assert "boot line 49" in message and "boot line 30" in message and "boot line 29" not in message
    assert set(caught.value.failures) == {"n1"}


def test_driver_runs_hosts_in_parallel():
    barrier = threading.Barrier(3, timeout=5)

    def running(target, budget):
        barrier.wait()  # only passes when all three hosts probe at the same time
        return ""

    probes = {step: (lambda t, b: "") for step in r.WAITED_STEPS}
    probes[r.RUNNING] = running
    targets = [r.Target(f"n{i}", f"10.0.0.{i}") for i in range(3)]
    ready = r.wait_ready(targets, probes, T, progress=None)
    assert sorted(ready) == ["n0", "n1", "n2"]


def test_missing_console_log_is_said_not_hidden(tmp_path):
    msg = r.timeout_message(r.Target("x", "1.2.3.4", tmp_path / "none.log"), r.TimedOut(r.BOOTED, 3, "starting"))
    assert "console log" in msg and "empty or missing" in msg


def test_ssh_banner_probe_against_local_sockets():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        def answer(payload):
            conn, _ = server.accept()
            with conn:
                conn.sendall(payload)

        t = threading.Thread(target=answer, args=(b"SSH-2.0-OpenSSH_9.2\r\n",))
        t.start()
        assert r.read_ssh_banner("127.0.0.1", port, 2.0) == ""
        t.join()
        t = threading.Thread(target=answer, args=(b"HTTP/1.1 400 Bad\r\n",))
        t.start()
        with pytest.raises(ConnectionError, match="not an SSH server"):
            r.read_ssh_banner("127.0.0.1", port, 2.0)
        t.join()


def test_console_lines_drop_colour_codes_and_collapse_the_start_job_spinner():
    text = (
        "\x1b[0;32m  OK  \x1b[0m] Started journal.\r\n"
        "\x1b[K[\x1b[0;31m*     \x1b[0m] (1 of 2) Job a.service/start running (3s / 1min)\r"
        "\x1bM\x1b[K[\x1b[0;31m**    \x1b[0m] (2 of 2) Job b.service/start running (4s / 1min)\r\n"
        "\r\n"
        "[ ***  ] Job b.service/start running (5s / 1min)\r\n"
        "[  OK  ] Reached target multi-user.\n"
    )
    assert r.console_lines(text) == [
        "  OK  ] Started journal.",
        "[ ***  ] Job b.service/start running (5s / 1min)",
        "[  OK  ] Reached target multi-user.",
    ]


def test_ssh_banner_probe_says_when_the_port_accepts_but_stays_silent():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with pytest.raises(TimeoutError, match="accepted the connection but sent no SSH banner"):
            r.read_ssh_banner("127.0.0.1", server.getsockname()[1], 0.3)
