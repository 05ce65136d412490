"""Real-world corpora restored end to end and compared catalog by catalog.

Schemas nobody on this project wrote (pagila; PostgreSQL's own regression
scripts, tests/support/corpora.py) are loaded the same way into a database on
the production cluster and one on the copy host (the copy is production at a
point in time), production is damaged, and the real `python -m ddl_job
from-copy` restores the schemas next to the damaged ones under suffixed
names. The restored schemas must then equal a pristine clone of the copy
(taken before the restore, which renames schemas inside the copy) in every
catalog detail and every row: tests/support/catalog_compare.py.

These tests fail while the product loses something; each failure lists every
difference, grouped by kind, with the run's timings.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from psycopg import sql

from pg_schema_restore.local.cluster import SUPERUSER, LocalCluster
from support import as_master, corpora
from support.catalog_compare import compare_schemas, summarize
from support.ddl_job_cli import Run, run_ddl_job
from support.pg import MASTER, as_superuser

pytestmark = pytest.mark.e2e

SUFFIX = "_r1"
# The restore's ownership marker ends each restored schema's comment
# (ddl_job/marker.py): expected, not a difference.
MARKER_PREFIX = "pg-schema-restore: restored by restore-id="
READER = "pgsr_corpus_reader"
# Copy workers: the regression corpus has ~260 small tables, each copied by
# two psql processes; their start-ups wait more than they work (34 s with 2
# workers, 20 s with 4, on 2 busy cores).
JOBS = 4


@dataclass
class Corpus:
    """A loaded corpus: production, the copy, and the copy's pristine clone."""

    prod: LocalCluster
    copyhost: LocalCluster
    prod_db: str
    copy_db: str
    reference_db: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@pytest.fixture
def clone_db(request):
    """Factory: `clone_db(cluster, template)` -> a FILE_COPY clone, dropped after the test."""
    made: list[tuple[LocalCluster, str]] = []

    def make(cluster: LocalCluster, template: str) -> str:
        name = f"ref_{os.getpid()}_{secrets.token_hex(3)}"
        cluster.create_database(name, template=template)
        made.append((cluster, name))
        return name

    yield make
    for cluster, name in made:
        # as the superuser: the regression corpus's clones are made by one
        # (fixture teardown, not the restore under test)
        with cluster.connect(autocommit=True, user=SUPERUSER) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


def ensure_role(cluster: LocalCluster, role: str) -> None:
    """Roles are per cluster: production and the copy host each need it."""
    with cluster.connect(autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))


def prepare(prod: LocalCluster, copyhost: LocalCluster, new_db, clone_db, prefix: str,
            loader: Callable[[LocalCluster, str], corpora.Load], damage: str, *,
            replicate: bool = False,
            adapt: Callable[[LocalCluster, str], list[str]] | None = None) -> Corpus:
    """Load the corpus on both sides, damage production, clone the copy.

    Both sides run the loader at once; with `replicate`, the copy alone runs
    it and production gets its dump (a long load is not paid twice).
    `adapt` then changes each side (before the damage and the clone).
    """
    corpus = Corpus(prod, copyhost, new_db(prod, prefix), new_db(copyhost, prefix))
    started = time.monotonic()
    if replicate:
        copy_load = loader(copyhost, corpus.copy_db)
        corpus.timings["load (copy)"] = round(time.monotonic() - started, 1)
        started = time.monotonic()
        prod_load = corpora.replicate(copyhost, corpus.copy_db, prod, corpus.prod_db)
        corpus.timings["replicate to production"] = round(time.monotonic() - started, 1)
    else:
        copy_load, prod_load = corpora.load_both(
            loader, [(copyhost, corpus.copy_db), (prod, corpus.prod_db)])
        corpus.timings["load (both sides)"] = round(time.monotonic() - started, 1)
    slowest = sorted(copy_load.timings.items(), key=lambda kv: -kv[1])[:6]
    corpus.notes += [f"copy load: {copy_load.summary()}",
                     f"slowest scripts: {slowest}",
                     f"production load: {prod_load.summary()}"]
    if adapt is not None:
        for cluster, db in ((copyhost, corpus.copy_db), (prod, corpus.prod_db)):
            corpus.notes += [f"adapted ({db}): {n}" for n in adapt(cluster, db)]
    with prod.connect(corpus.prod_db, autocommit=True) as conn:
        conn.execute(damage)
    started = time.monotonic()
    corpus.reference_db = clone_db(copyhost, corpus.copy_db)
    corpus.timings["clone"] = round(time.monotonic() - started, 1)
    return corpus


def restore_and_compare(corpus: Corpus, schemas: list[str],
                        unavoidable: tuple[tuple[str, str], ...] = ()) -> None:
    """Run from-copy on the copy, compare the clone with production, and fail
    with every difference (and the run's error) if anything is lost.

    `unavoidable`: (text in a difference, text of the restore's warning) for
    what PostgreSQL makes impossible to reproduce: such a difference passes
    only if one of the restore's own warnings names its table and says why."""
    args = ["from-copy"]
    for schema in schemas:
        args += ["--schema", schema]
    restore_id = "corp-" + secrets.token_hex(3)
    args += ["--suffix", SUFFIX, "--disposable-source", "--restore-id", restore_id,
             "--jobs", str(JOBS), "--keep-on-failure"]
    run: Run = run_ddl_job(args, source=corpus.copyhost.dsn(corpus.copy_db),
                           target=corpus.prod.dsn(corpus.prod_db), timeout=600)
    corpus.timings["from-copy"] = round(run.seconds, 1)
    steps = {e["step"].rsplit(".", 1)[-1]: e["seconds"] for e in run.find("finished")
             if "seconds" in e}
    corpus.notes.append(f"from-copy steps (s): {steps}")
    mapping = {schema: schema + SUFFIX for schema in schemas}
    started = time.monotonic()
    with corpus.copyhost.connect(corpus.reference_db) as source, \
            corpus.prod.connect(corpus.prod_db) as target:
        counts: dict[str, int] = {}
        differences = compare_schemas(source, target, mapping, marker_prefix=MARKER_PREFIX,
                                      counts=counts)
    corpus.timings["compare"] = round(time.monotonic() - started, 1)
    corpus.notes.append(f"compared: {counts}")
    outcome = f"from-copy: exit {run.returncode}"
    if run.returncode != 0:
        outcome += f", {run.last if run.events else run.stderr[-2000:]}"
    report = "\n".join([outcome, f"timings: {corpus.timings}", *corpus.notes,
                        summarize(differences)])
    print(report)
    assert run.returncode == 0, report
    said = (run.last["result"].get("warnings") or []) if run.events else []
    unexplained = [d for d in differences if not _explained(d, unavoidable, said)]
    assert not unexplained, report


def _explained(difference: str, unavoidable: tuple[tuple[str, str], ...],
               warnings: list[str]) -> bool:
    """`[kind] schema.table…: …` is explained by a warning naming the table."""
    table = difference.split("] ", 1)[-1].split(":", 1)[0].split(".")[1]
    return any(marker in difference and any(reason in w and table in w for w in warnings)
               for marker, reason in unavoidable)


# -- (a) pagila as shipped: the `public` schema ------------------------------------

PAGILA_DAMAGE = """
    DELETE FROM public.payment WHERE payment_date >= '2007-04-01';
    UPDATE public.film SET rental_rate = 0;
    DROP VIEW public.sales_by_store;
    DROP TABLE public.film_actor CASCADE;
"""


@corpora.needs_pagila
def test_pagila_public_restored_identical(prod, copyhost, new_db, clone_db):
    corpora.require_pagila()
    corpus = prepare(prod, copyhost, new_db, clone_db, "pagila", corpora.load_pagila,
                     PAGILA_DAMAGE)
    restore_and_compare(corpus, ["public"])


# -- (b) pagila as a tenant schema, with a schema of reports on it ------------------

REPORTS = f"""
CREATE SCHEMA reports;
COMMENT ON SCHEMA reports IS 'reports on the pagila tenant';
GRANT USAGE ON SCHEMA reports TO {READER};
ALTER DEFAULT PRIVILEGES IN SCHEMA reports GRANT SELECT ON TABLES TO {READER};
CREATE VIEW reports.film_revenue AS
    SELECT f.film_id, f.title, sum(p.amount) AS revenue
    FROM pagila.film f JOIN pagila.inventory i USING (film_id)
    JOIN pagila.rental r USING (inventory_id) JOIN pagila.payment p USING (rental_id)
    GROUP BY f.film_id, f.title;
CREATE VIEW reports.top_films AS
    SELECT * FROM reports.film_revenue ORDER BY revenue DESC LIMIT 10;
CREATE MATERIALIZED VIEW reports.monthly_sales AS
    SELECT date_trunc('month', payment_date) AS month, store_id, sum(amount) AS total
    FROM pagila.payment JOIN pagila.staff USING (staff_id) GROUP BY 1, 2;
CREATE UNIQUE INDEX monthly_sales_key ON reports.monthly_sales (month, store_id);
CREATE FUNCTION reports.top_customers(n integer) RETURNS SETOF pagila.customer
    LANGUAGE sql STABLE AS $$
        SELECT c.* FROM pagila.customer c JOIN pagila.payment p USING (customer_id)
        GROUP BY c.customer_id ORDER BY sum(p.amount) DESC, c.customer_id LIMIT n $$;
CREATE FUNCTION reports.revenue_of(film integer) RETURNS numeric
    LANGUAGE plpgsql STABLE SET search_path = pagila, reports AS $$
    BEGIN
        RETURN (SELECT revenue FROM film_revenue WHERE film_id = film);
    END $$;
REVOKE EXECUTE ON FUNCTION reports.revenue_of(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION reports.revenue_of(integer) TO {READER};
CREATE TABLE reports.snapshots (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    film_id integer NOT NULL REFERENCES pagila.film,
    rating pagila.mpaa_rating,
    taken date NOT NULL DEFAULT '2024-01-01',
    note text
);
GRANT SELECT (film_id, note), UPDATE (note) ON reports.snapshots TO {READER};
INSERT INTO reports.snapshots (film_id, rating, note)
    SELECT film_id, rating, title FROM pagila.film WHERE film_id % 10 = 0;
COMMENT ON COLUMN reports.snapshots.note IS 'free text';
"""

TENANT_DAMAGE = """
    DELETE FROM pagila.payment WHERE payment_id % 3 = 0;
    UPDATE pagila.rental SET staff_id = 1 WHERE rental_id % 3 = 0;
    TRUNCATE reports.snapshots;
    DROP MATERIALIZED VIEW reports.monthly_sales;
"""


def load_tenant(cluster: LocalCluster, db: str) -> corpora.Load:
    load = corpora.load_pagila(cluster, db, schema="pagila")
    with cluster.connect(db, autocommit=True) as conn:
        conn.execute(REPORTS)
    return load


@corpora.needs_pagila
def test_pagila_tenant_and_reports_restored_identical(prod, copyhost, new_db, clone_db):
    corpora.require_pagila()
    for cluster in (prod, copyhost):
        ensure_role(cluster, READER)
    corpus = prepare(prod, copyhost, new_db, clone_db, "tenant", load_tenant, TENANT_DAMAGE)
    restore_and_compare(corpus, ["pagila", "reports"])


@corpora.needs_pagila
def test_reports_alone_keep_pointing_at_production_pagila(prod, copyhost, new_db, clone_db):
    """Only `reports` is restored: its views, FK, function bodies and column
    types must still name production's `pagila` (cross-schema references to
    a schema that is not restored). Its materialized view over `pagila` can
    only be refreshed from production's current rows: a warning says so."""
    corpora.require_pagila()
    for cluster in (prod, copyhost):
        ensure_role(cluster, READER)
    corpus = prepare(prod, copyhost, new_db, clone_db, "reports", load_tenant, TENANT_DAMAGE)
    restore_and_compare(corpus, ["reports"], unavoidable=(
        ("[data] reports.monthly_sales", "outside the restored schemas"),))


# -- (c) PostgreSQL's regression scripts in one schema -----------------------------

REGRESS_SCHEMA = "regress"
REGRESS_DAMAGE = """
    DELETE FROM regress.tenk1 WHERE unique1 % 2 = 0;
    DROP TABLE regress.onek2 CASCADE;
    TRUNCATE regress.int8_tbl CASCADE;
"""


def load_regression(cluster: LocalCluster, db: str) -> corpora.Load:
    return corpora.load_regress(cluster, db, REGRESS_SCHEMA)


def test_regression_corpus_restored_identical(prod, copyhost, new_db, clone_db):
    """PostgreSQL's regression scripts are written for a superuser and load as
    one; the restore connects as `master`, as on RDS. Before it, the schema is
    made what an RDS application schema can be (support/as_master.py): what
    only a superuser can create (operator classes, C-language base types,
    casts WITHOUT FUNCTION…) is dropped with what depends on it, the
    superuser's objects are given to `master`, and `master` is a member of
    the other roles owning objects there."""
    corpora.require_regress()
    with as_superuser(prod, copyhost):
        corpus = prepare(prod, copyhost, new_db, clone_db, "regress", load_regression,
                         REGRESS_DAMAGE, replicate=True, adapt=lambda cluster, db:
                         as_master.adapt(cluster, db, REGRESS_SCHEMA, MASTER))
    restore_and_compare(corpus, [REGRESS_SCHEMA], unavoidable=(
        (": local: source False, target True",
         "inherited only and are now also defined locally"),
    ))
