"""The embedded default: a real restore, end to end, on local PostgreSQL.

1. start a "production" cluster with WAL archiving, three tenant schemas;
2. take a base backup, keep writing, record a point in time;
3. damage a tenant (drop a table, delete rows);
4. run the restore engine's seven phases with the `local` provider: a
   genuine point-in-time copy (base backup + WAL replay) stands in for RDS;
5. the tenant comes back next to the damaged one under a suffixed name;
6. print what happened, timings and the verify result; nothing temporary left.

As on RDS, the restore connects as a master user that is no superuser
(`local.cluster.rds_roles`), and the tenants belong to an application role
the master user is not a member of: `grantMembership` lends it that
membership for the restore and revokes it afterwards.
"""

from __future__ import annotations

import secrets
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

from psycopg import sql

from ddl_job.errors import RestoreError

from . import events, wiring
from .config import OperatorConfig
from .engine import runner
from .engine.record import RestoreRecord
from .engine.spec import RestoreSpec
from .local.cluster import MASTER, LocalCluster, rds_roles
from .local.secrets import LocalSecrets

DATABASE = "appdb"
APP = "app"   # the application role that owns the tenants
TENANTS = ("customer_a1", "customer_b2", "customer_c3")
DAMAGED = "customer_a1"

TENANT_DDL = """
CREATE SCHEMA {s};
CREATE TABLE {s}.customers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    country text NOT NULL REFERENCES shared.countries(code),
    created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE {s}.orders (
    id bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES {s}.customers(id),
    amount numeric(12,2) NOT NULL CHECK (amount >= 0),
    note text);
CREATE INDEX ON {s}.orders (customer_id);
CREATE TABLE {s}.audit (id bigserial PRIMARY KEY, event text NOT NULL,
                        at timestamptz NOT NULL DEFAULT now());
CREATE FUNCTION {s}.log_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO {s}.audit(event) VALUES ('order ' || NEW.id);
  RETURN NEW;
END $$;
CREATE TRIGGER orders_audit AFTER INSERT ON {s}.orders
    FOR EACH ROW EXECUTE FUNCTION {s}.log_order();
CREATE VIEW {s}.customer_totals AS
    SELECT c.id, c.name, sum(o.amount) AS total
    FROM {s}.customers c LEFT JOIN {s}.orders o ON o.customer_id = c.id GROUP BY c.id;
CREATE MATERIALIZED VIEW {s}.country_totals AS
    SELECT c.country, count(*) AS orders FROM {s}.orders o
    JOIN {s}.customers c ON c.id = o.customer_id GROUP BY c.country;
"""


def _fill(cluster: LocalCluster, schema: str, rows: int) -> None:
    s = sql.Identifier(schema)
    customers = max(1, rows // 20)
    with cluster.connect(DATABASE) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(APP)))
        conn.execute(sql.SQL(TENANT_DDL).format(s=s))
        conn.execute(sql.SQL("""
            INSERT INTO {}.customers(name, country)
            SELECT 'customer ' || g, (ARRAY['FR','DE','ES'])[1 + g %% 3]
            FROM generate_series(1, %s) g""").format(s), (customers,))
        conn.execute(sql.SQL("ALTER TABLE {}.orders DISABLE TRIGGER orders_audit").format(s))
        conn.execute(sql.SQL("""
            INSERT INTO {}.orders(customer_id, amount, note)
            SELECT 1 + g %% %s, (g %% 1000) / 10.0, 'order #' || g
            FROM generate_series(1, %s) g""").format(s), (customers, rows))
        conn.execute(sql.SQL("ALTER TABLE {}.orders ENABLE TRIGGER orders_audit").format(s))
        conn.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}.country_totals").format(s))


def _counts(cluster: LocalCluster, schema: str) -> dict[str, int | str]:
    out: dict[str, int | str] = {}
    with cluster.connect(DATABASE) as conn:
        for table in ("customers", "orders", "audit"):
            exists = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = %s "
                "AND tablename = %s)", (schema, table)).fetchone()[0]
            out[table] = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
                sql.Identifier(schema, table))).fetchone()[0] if exists else "missing"
    return out


def run_demo(workdir: str, *, rows: int = 200_000, keep: bool = False) -> int:
    """Run the whole demo; returns a process exit code."""
    base = Path(workdir).resolve()
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    password = secrets.token_urlsafe(16)
    say = events.HumanReporter("demo")
    timings: dict[str, float] = {}
    prod: LocalCluster | None = None

    def timed(name: str, started: float) -> None:
        timings[name] = round(time.monotonic() - started, 2)

    try:
        started = time.monotonic()
        prod = LocalCluster.create(base / "production", password, archive_dir=base / "wal")
        prod.start()
        rds_roles(prod, password, (APP,))
        prod.create_database(DATABASE)
        prod.execute(sql.SQL("ALTER DATABASE {db} OWNER TO {master}; "
                             "GRANT CREATE ON DATABASE {db} TO {app}").format(
            db=sql.Identifier(DATABASE), master=sql.Identifier(MASTER),
            app=sql.Identifier(APP)).as_string(None))
        prod.execute(sql.SQL("SET ROLE {}; CREATE SCHEMA shared; "
                             "CREATE TABLE shared.countries(code text PRIMARY KEY); "
                             "INSERT INTO shared.countries VALUES ('FR'), ('DE'), ('ES');").format(
            sql.Identifier(APP)).as_string(None), DATABASE)
        for tenant in TENANTS:
            _fill(prod, tenant, rows)
        backup = prod.base_backup(base / "basebackup")
        with prod.connect(DATABASE) as conn:
            conn.execute(sql.SQL("INSERT INTO {}.orders(customer_id, amount, note) "
                                 "VALUES (1, 42, 'written after the backup')").format(
                sql.Identifier(DAMAGED)))
        timed("production setup", started)
        say.emit("production", port=prod.port, database=DATABASE, tenants=",".join(TENANTS),
                 rows_per_tenant=rows)

        time.sleep(0.2)
        point = datetime.now(timezone.utc)
        time.sleep(0.2)
        before = _counts(prod, DAMAGED)
        say.emit("restore point", time=point.isoformat(), tenant=DAMAGED, counts=before)

        with prod.connect(DATABASE) as conn:
            conn.execute(sql.SQL("DROP TABLE {}.orders CASCADE").format(sql.Identifier(DAMAGED)))
            conn.execute(sql.SQL("DELETE FROM {}.customers WHERE id % 2 = 0").format(
                sql.Identifier(DAMAGED)))
        damaged = _counts(prod, DAMAGED)
        say.emit("damage done", tenant=DAMAGED, counts=damaged)

        prod.archive_current_wal(base / "wal")
        secrets_store = LocalSecrets(base / "secrets")
        secrets_store.write("production", {"host": "127.0.0.1", "port": prod.port,
                                           "username": MASTER, "password": password})
        (base / "temporary").mkdir()
        settings = OperatorConfig(
            provider="local", executor="subprocess", artifacts_root=str(base / "artifacts"),
            local_base_backup=str(backup), local_wal_archive=str(base / "wal"),
            local_production_secret="production", local_workdir=str(base / "temporary"),
            local_secrets_dir=str(base / "secrets"))
        spec = RestoreSpec.from_dict({"database": DATABASE, "schemas": [DAMAGED],
                                      "restoreTime": point.isoformat(),
                                      "grantMembership": True})
        record = RestoreRecord(restore_id=f"demo{secrets.token_hex(3)}", spec=spec)
        ctx = wiring.build_context(settings, record, on_event=events.printer())
        started = time.monotonic()
        runner.run(record, ctx)
        timed("restore (7 phases)", started)
        if not record.succeeded:
            error = record.error or {}
            say.emit("failed", phase=error.get("phase"), reason=error.get("reason"),
                     message=error.get("message"))
            return 1
        target = record.targets[DAMAGED]
        restored = _counts(prod, target)
        leftovers = sorted(p.name for p in (base / "temporary").iterdir())
    except RestoreError as exc:
        say.emit("failed", reason=exc.reason, message=exc.message)
        return 1
    finally:
        if prod is not None and not keep:
            prod.destroy()
        if not keep:
            shutil.rmtree(base, ignore_errors=True)

    print()
    print(f"Restored {DAMAGED} as it was at {point.isoformat()} into "
          f"{target}, next to the damaged schema.")
    print(f"{'table':<12}{'at restore point':>18}{'damaged now':>14}{'restored':>12}")
    for table in before:
        print(f"{table:<12}{before[table]!s:>18}{damaged[table]!s:>14}{restored[table]!s:>12}")
    print()
    for name, seconds in {**timings, **{f"  {k}": v for k, v in record.timings.items()}}.items():
        print(f"{name:<24}{seconds:>8.2f} s")
    print(f"temporary resources left: {leftovers or 'none'}")
    granted = record.result.get("grantedMemberships") or {}
    lent = "; ".join(f"in {where}: {', '.join(roles)}" for where, roles in granted.items()
                     if roles) or "none"
    revoked = ", ".join(record.result.get("revokedMemberships") or []) or "none"
    print(f"connected as {MASTER} (no superuser); memberships lent {lent}; revoked: {revoked}")
    verify = record.result.get("verify") or {}
    print(f"\nverify: {'OK' if verify.get('ok') else 'FAILED'} "
          f"({verify.get('tables')} tables, {verify.get('rows')} rows compared)")
    if keep and prod is not None:
        (base / ".password").write_text(password)
        print(f"\nproduction left running on 127.0.0.1:{prod.port}, database {DATABASE}, "
              f"user {MASTER} (password in {base}/.password)")
    return 0 if verify.get("ok") and before == restored and not leftovers else 1
