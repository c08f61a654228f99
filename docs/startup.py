"""Start-up time of `ktg --help` and `ktg status RUN` in two source trees (an older commit
checked out with `git worktree add`, and this one), N alternated fresh runs each; min and
median wall seconds. Usage: python docs/startup.py N OLD_TREE RUN_DIR"""
import statistics, subprocess, sys, time, os
N = int(sys.argv[1]) if len(sys.argv) > 1 else 9
PY = sys.executable
RUN = sys.argv[3]
trees = {"before": sys.argv[2], "after": str(__import__("pathlib").Path(__file__).resolve().parents[1])}
cmds = {"ktg --help": ["--help"], "ktg status RUN": ["status", RUN]}
times = {(t, c): [] for t in trees for c in cmds}
for i in range(N):
    for c, argv in cmds.items():
        for t, root in trees.items():
            env = dict(os.environ, PYTHONPATH=root, RAY_AUTH_MODE="disabled")
            t0 = time.perf_counter()
            r = subprocess.run([PY, "-m", "ktg_search.cli", *argv], env=env, cwd="/tmp",
                               capture_output=True, text=True)
            dt = time.perf_counter() - t0
            assert r.returncode == 0, (t, c, r.stderr[-500:])
            times[(t, c)].append(dt)
print(f"{'command':18s} {'tree':7s} {'min s':>7s} {'median s':>9s}")
for c in cmds:
    for t in trees:
        v = times[(t, c)]
        print(f"{c:18s} {t:7s} {min(v):7.3f} {statistics.median(v):9.3f}")
    b, a = times[("before", c)], times[("after", c)]
    print(f"{c:18s} ratio   {min(b)/min(a):6.1f}x {statistics.median(b)/statistics.median(a):8.1f}x  (before / after)")
