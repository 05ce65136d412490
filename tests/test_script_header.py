"""pg_restore's script header: its timeouts are apply's to set, not the script's.

The header's `SET lock_timeout = 0` used to cancel the 30 s lock wait apply
sets before running pre-data, and pg_restore 17's `SET transaction_timeout
= 0` made every pre-data script fail on a PostgreSQL 15 or 16 production
("unrecognized configuration parameter"): found by running the ddl_job image
(PostgreSQL 17 client) against PostgreSQL 15.
"""

from __future__ import annotations

from ddl_job.dump import without_header_timeouts

HEADER = """--
-- PostgreSQL database dump
--

-- Dumped from database version 15.14
-- Dumped by pg_dump version 17.6

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET transaction_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);

"""
BODY = """--
-- Name: f(); Type: FUNCTION; Schema: s; Owner: app
--

CREATE FUNCTION s.f() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
SET lock_timeout = 0;
END
$$;
"""


def test_the_headers_timeouts_go_and_everything_else_stays() -> None:
    text = without_header_timeouts(HEADER + BODY)
    assert "SET statement_timeout" not in text
    assert "SET transaction_timeout" not in text
    assert "SET idle_in_transaction_session_timeout" not in text
    assert "SET client_encoding = 'UTF8';" in text
    assert "set_config('search_path', '', false)" in text
    # an object's own text is never touched, whatever it holds
    assert text.endswith(BODY)
    assert text.count("SET lock_timeout = 0;") == 1


def test_a_script_without_a_header_is_unchanged() -> None:
    assert without_header_timeouts(BODY) == BODY
