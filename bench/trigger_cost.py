#!/usr/bin/python3
"""What sending costs a writing application (issue 16), with synchronous_commit
off and on, every variant alternating with the others in one run so that the
ratios hold on a noisy machine:

- pgbench tpcb-like plain, and with an AFTER INSERT trigger on pgbench_history
  that calls send_ws, the Node.js peer's pg_notify (bench/peers/node), or only
  INSERTs the same row into a plain table shaped like websocket_message (the
  floor: what writing the message costs), at 8 and 32 clients: each trigger's
  overhead in % of the plain tps;
- SELECT send_ws alone against an INSERT of the same row alone, one statement
  per transaction, synchronous_commit on, at 8, 16 and 32 clients (does
  send_ws grow with clients as the INSERT does?).

A variant's tps is the mean of its runs; each round runs the variants in the
reverse order of the round before (and of the configuration before), so a
drift in the machine's speed falls on all of them alike.

bench/run.py calls it as the last phase of `make bench`.  Alone, on a
throwaway cluster of the PostgreSQL that pg_config names:
    /usr/bin/python3 bench/trigger_cost.py [--rounds 3] [--seconds 5]
prints a Markdown table and writes bench/results/trigger_cost.json.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "test", "e2e"))
from conftest import PGBIN  # noqa: E402

# the floor: the row send_ws writes (target, jsonb body, sent_at), into a plain table
FLOOR_TABLE = ("CREATE TABLE IF NOT EXISTS bench_plain_message (id bigserial PRIMARY KEY, "
               "sent_at timestamptz NOT NULL DEFAULT now(), target text, body jsonb)")
FLOOR_BODY = ("INSERT INTO bench_plain_message (target, body) VALUES (NEW.aid::text, "
              "jsonb_build_object('account', NEW.aid, 'delta', NEW.delta));")
SEND_SQL = "SELECT send_ws((random() * 1000)::int::text, '{\"x\": 1}')"
INSERT_SQL = ("INSERT INTO bench_plain_message (target, body) "
              "VALUES ((random() * 1000)::int::text, '{\"x\": 1}')")
SYNCS = ("off", "on")
# summary.json's key for each synchronous_commit setting
OVERHEAD_KEYS = {"off": "trigger_overhead_pct", "on": "trigger_overhead_sync_on_pct"}
# issue 16's targets
TARGET_OVERHEAD_PCT = 10
TARGET_SEND_VS_INSERT_PCT = 80


def alternate(runs, rounds, flip=False):
    """Run each of `runs` (name -> function returning tps) `rounds` times, the
    order reversed every round (starting reversed with flip); return
    {name: [tps of each round]}."""
    names = list(runs)
    out = {n: [] for n in names}
    for r in range(rounds):
        for n in (names[::-1] if (r % 2 == 1) != flip else names):
            out[n].append(runs[n]())
    return out


def overhead_pct(tps, baseline="plain"):
    """{name: % fewer tps than the baseline} from alternate()'s result, mean
    against mean (positive: slower than the baseline)."""
    base = statistics.mean(tps[baseline])
    return {n: round(100.0 * (1 - statistics.mean(v) / base), 1)
            for n, v in tps.items() if n != baseline}


def clear_messages(env):
    """Empty the outbox and the plain table once the ordering worker has
    positioned everything (so that its backlog does not slow the next run)."""
    env.sql("SELECT wsnotify_order_barrier()")
    env.sql("DELETE FROM websocket_message")
    env.sql("TRUNCATE bench_plain_message, pgbench_history")


def tpcb_runs(env, bodies, clients, sync, seconds):
    """name -> function running tpcb-like once (with that trigger, if any)."""
    def run(name):
        def go():
            if name != "plain":
                env.sql(f"CREATE TRIGGER bench_{name} AFTER INSERT ON pgbench_history "
                        f"FOR EACH ROW EXECUTE FUNCTION bench_{name}()")
            try:
                return env.pgbench(None, clients, seconds, builtin="tpcb-like",
                                   options=f"-c synchronous_commit={sync}")
            finally:
                if name != "plain":
                    env.sql(f"DROP TRIGGER bench_{name} ON pgbench_history")
                env.sql("SELECT wsnotify_order_barrier()")
        return go
    return {name: run(name) for name in ["plain", *bodies]}


def trigger_overhead(env, bodies, clients_list, seconds, rounds, log=print):
    """tpcb-like plain and with each trigger of `bodies` (name -> PL/pgSQL
    statements), at each client count, synchronous_commit off and on."""
    env.sql("DROP TABLE IF EXISTS pgbench_accounts, pgbench_branches, pgbench_history, "
            "pgbench_tellers")
    subprocess.run([os.path.join(PGBIN, "pgbench"), "-q", "-i", "-s", "10", "-h", "127.0.0.1",
                    "-p", str(env.cluster.port), "-U", "postgres", "bench"],
                   capture_output=True, check=True)
    env.sql(FLOOR_TABLE)
    for name, body in bodies.items():
        env.sql(f"CREATE OR REPLACE FUNCTION bench_{name}() RETURNS trigger LANGUAGE plpgsql "
                f"AS $$ BEGIN {body} RETURN NEW; END $$")
    tps, pct = {}, {}
    flip = False
    for sync in SYNCS:
        for clients in clients_list:
            got = alternate(tpcb_runs(env, bodies, clients, sync, seconds), rounds, flip)
            flip = not flip
            clear_messages(env)
            tps.setdefault(sync, {})[str(clients)] = got
            pct.setdefault(sync, {})[str(clients)] = overhead_pct(got)
            log(f"  tpcb-like, synchronous_commit {sync}, {clients} clients: "
                f"{ {n: round(statistics.mean(v)) for n, v in got.items()} } tps, "
                f"overhead % {pct[sync][str(clients)]}")
    return {"tps": tps, "overhead_pct": pct}


def send_vs_insert(env, clients_list, seconds, rounds, sync="on", log=print):
    """SELECT send_ws alone against an INSERT of the same row alone, at each
    client count: {clients: {"send_ws": [...], "insert": [...], "pct": x}}."""
    env.sql(FLOOR_TABLE)
    out = {}
    for i, clients in enumerate(clients_list):
        runs = {kind: (lambda sql=sql: env.pgbench(
                    sql, clients, seconds, options=f"-c synchronous_commit={sync}"))
                for kind, sql in (("insert", INSERT_SQL), ("send_ws", SEND_SQL))}
        got = alternate(runs, rounds, flip=i % 2 == 1)
        clear_messages(env)
        mean = {k: statistics.mean(v) for k, v in got.items()}
        out[str(clients)] = {**got, "pct": round(100.0 * mean["send_ws"] / mean["insert"], 1)}
        log(f"  one statement per transaction, synchronous_commit {sync}, {clients} clients: "
            f"INSERT {mean['insert']:.0f} tps, send_ws {mean['send_ws']:.0f} tps "
            f"({out[str(clients)]['pct']}%)")
    return out


def overhead_summary(result, name):
    """summary.json's trigger keys for trigger `name`: the worst client count
    (trigger_overhead_pct, as before) and each one (trigger_overhead_pct_8 ...),
    for synchronous_commit off and on (none when it was not measured)."""
    out = {}
    for sync, key in OVERHEAD_KEYS.items():
        per = {c: v[name] for c, v in result["overhead_pct"][sync].items() if name in v}
        if not per:
            continue
        out[key] = max(per.values())
        out.update({f"{key}_{c}": v for c, v in per.items()})
    return out


def scaling_summary(single, sync="on"):
    """summary.json's `extra` keys for send_ws against the INSERT: the ratio at
    the largest client count (send_ws_sync_on_vs_insert_pct), at each, and
    both tps series."""
    tag = f"sync_{sync}"
    counts = sorted(single, key=int)
    out = {f"send_ws_{tag}_vs_insert_pct": single[counts[-1]]["pct"]}
    for c in counts:
        out[f"send_ws_{tag}_vs_insert_pct_{c}"] = single[c]["pct"]
    for kind in ("send_ws", "insert"):
        for c in counts:
            out[f"{kind}_{tag}_tps_{c}"] = round(statistics.mean(single[c][kind]))
        first, last = (statistics.mean(single[c][kind]) for c in (counts[0], counts[-1]))
        out[f"{kind}_{tag}_tps_growth_{counts[0]}_to_{counts[-1]}"] = round(last / first, 2)
    return out


def verdict(ok):
    return "holds" if ok else "no"


def markdown(result, single, names):
    """The figures as Markdown tables, with issue 16's targets."""
    lines = ["| synchronous_commit | clients | tpcb-like tps | "
             + " | ".join(f"with the {n} trigger" for n in names)
             + f" | {names[0]} ≤ {TARGET_OVERHEAD_PCT}% |",
             "|---|---:|---:|" + "---:|" * len(names) + "---|"]
    for sync, per in result["tps"].items():
        for c, tps in per.items():
            pct = result["overhead_pct"][sync][c]
            cells = [f"{statistics.mean(tps[n]):.0f} ({-pct[n]:+}%)" for n in names]
            lines.append(f"| {sync} | {c} | {statistics.mean(tps['plain']):.0f} | "
                         + " | ".join(cells)
                         + f" | {verdict(pct[names[0]] <= TARGET_OVERHEAD_PCT)} |")
    lines += ["", "| synchronous_commit on | clients | INSERT tps | send_ws tps "
              f"| send_ws / INSERT | ≥ {TARGET_SEND_VS_INSERT_PCT}% |",
              "|---|---:|---:|---:|---:|---|"]
    for c, v in single.items():
        lines.append(f"| | {c} | {statistics.mean(v['insert']):.0f} "
                     f"| {statistics.mean(v['send_ws']):.0f} | {v['pct']}% "
                     f"| {verdict(v['pct'] >= TARGET_SEND_VS_INSERT_PCT)} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="runs of each variant (%(default)s)")
    ap.add_argument("--seconds", type=int, default=5, help="seconds per run (%(default)s)")
    ap.add_argument("--clients", default="8,32", help="tpcb-like clients (%(default)s)")
    ap.add_argument("--scaling", default="8,16,32",
                    help="send_ws / INSERT clients (%(default)s)")
    args = ap.parse_args()
    from run import RESULTS, Env, NodeSystem, WsnotifySystem, log
    started = time.time()
    env = Env()
    try:
        bodies = {"send_ws": WsnotifySystem(env).trigger_body(),
                  "pg_notify": NodeSystem(env).trigger_body(), "floor": FLOOR_BODY}
        clients = [int(c) for c in args.clients.split(",")]
        result = trigger_overhead(env, bodies, clients, args.seconds, args.rounds, log)
        single = send_vs_insert(env, [int(c) for c in args.scaling.split(",")], args.seconds,
                                args.rounds, log=log)
    finally:
        env.destroy()
    summary = {**{n: overhead_summary(result, n) for n in bodies}, **scaling_summary(single)}
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "trigger_cost.json"), "w") as f:
        json.dump({"rounds": args.rounds, "seconds": args.seconds, "trigger": result,
                   "single_sync_on": single, "summary": summary}, f, indent=1)
    print(markdown(result, single, list(bodies)))
    print(f"\n{args.rounds} rounds of {args.seconds} s, fsync on, "
          f"{time.time() - started:.0f} s; bench/results/trigger_cost.json")


if __name__ == "__main__":
    main()
