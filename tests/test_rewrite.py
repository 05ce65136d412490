"""Unit tests for ddl_job.rewrite: schema references inside routine text.

The rules (see the module docstring): rewrite an old schema name only where it
is a schema qualifier, a bare `search_path` element, a string literal whose
whole value is the name, recursively inside dollar bodies and string literals
(dynamic SQL). Everything else -- comments, other literals, column names,
names that merely contain the old name -- stays byte for byte.
"""

from __future__ import annotations


from ddl_job.rewrite import Rewriter, quote_ident, rewrite_sql

M = {"customer_a1": "customer_a1_rst", "Tenant B": "Tenant B_rst"}


def rw(text: str, mapping: dict[str, str] = M) -> str:
    return rewrite_sql(text, mapping)[0]


def unchanged(text: str, mapping: dict[str, str] = M) -> None:
    new, changes = rewrite_sql(text, mapping)
    assert new == text
    assert changes == []


# -- qualified names -------------------------------------------------------

def test_qualified_table_is_rewritten():
    assert rw("SELECT * FROM customer_a1.orders") == "SELECT * FROM customer_a1_rst.orders"


def test_changes_are_reported():
    new, changes = rewrite_sql("SELECT customer_a1.f(), customer_a1.g()", M)
    assert new == "SELECT customer_a1_rst.f(), customer_a1_rst.g()"
    assert len(changes) == 2


def test_unquoted_name_folds_to_lower_case_like_postgres():
    assert rw("SELECT * FROM CUSTOMER_A1.Orders") == "SELECT * FROM customer_a1_rst.Orders"


def test_quoted_lower_case_name_is_rewritten():
    assert rw('SELECT * FROM "customer_a1".orders') == "SELECT * FROM customer_a1_rst.orders"


def test_quoted_upper_case_is_another_schema():
    unchanged('SELECT * FROM "CUSTOMER_A1".orders')


def test_quoted_mixed_case_name_with_space():
    assert rw('INSERT INTO "Tenant B".items VALUES (1)') == \
        'INSERT INTO "Tenant B_rst".items VALUES (1)'
    # unquoted tenant b is schema "tenant", not "Tenant B"
    unchanged("SELECT tenant.b")


def test_new_name_is_quoted_when_needed():
    assert quote_ident("customer_a1_rst") == "customer_a1_rst"
    assert quote_ident("Tenant B_rst") == '"Tenant B_rst"'
    assert quote_ident("Ünïcode") == '"Ünïcode"'
    assert rw("SELECT customer_a1.t", {"customer_a1": "Upper"}) == 'SELECT "Upper".t'


def test_whitespace_and_comments_around_the_dot():
    assert rw("SELECT * FROM customer_a1 . orders") == "SELECT * FROM customer_a1_rst . orders"
    assert rw("SELECT * FROM customer_a1/* c */.orders") == \
        "SELECT * FROM customer_a1_rst/* c */.orders"


def test_type_casts_and_function_calls():
    assert rw("SELECT 'x'::customer_a1.mood, customer_a1.f($1)") == \
        "SELECT 'x'::customer_a1_rst.mood, customer_a1_rst.f($1)"


def test_three_part_name_only_first_part():
    assert rw("SELECT customer_a1.orders.customer_a1 FROM customer_a1.orders") == \
        "SELECT customer_a1_rst.orders.customer_a1 FROM customer_a1_rst.orders"


def test_non_ascii_names_fold_only_ascii():
    # PostgreSQL (UTF-8) folds only A-Z: KÜNDÉ is schema "kÜndÉ", not "kündé".
    assert rw("SELECT kündé.t, KÜNDÉ.t, KüNDé.t", {"kündé": "neu"}) == \
        "SELECT neu.t, KÜNDÉ.t, neu.t"


# -- names that contain the old name, tables/columns named like the schema --

def test_prefix_named_schemas_are_left_alone():
    unchanged("SELECT r.rate FROM customer_a1_ref.rates r JOIN customer_a10.x USING (id)")
    unchanged('SELECT * FROM "customer_a1_ref".rates, "Tenant B_ref".t, "Tenant Bx".t')
    unchanged("SELECT * FROM xcustomer_a1.t, customer_a1x.t")


def test_table_named_like_its_schema():
    assert rw("SELECT val FROM customer_a1.customer_a1 t") == \
        "SELECT val FROM customer_a1_rst.customer_a1 t"
    assert rw('SELECT * FROM "Tenant B"."Tenant B"') == 'SELECT * FROM "Tenant B_rst"."Tenant B"'


def test_column_named_like_the_schema():
    unchanged("SELECT o.customer_a1, NEW.customer_a1 FROM t o")
    unchanged("SELECT customer_a1 FROM t WHERE customer_a1 IS NOT NULL")
    assert rw("SELECT customer_a1 FROM customer_a1.orders") == \
        "SELECT customer_a1 FROM customer_a1_rst.orders"
    unchanged('SELECT o."Tenant B" FROM t o')


# The catalog says which `tenant.x` name a column of the table `tenant`.
COLUMNS = {"customer_a1": {"val", "id"}}


def test_table_named_like_schema_used_as_column_qualifier():
    assert rewrite_sql("SELECT customer_a1.val FROM customer_a1.customer_a1", M, COLUMNS)[0] == \
        "SELECT customer_a1.val FROM customer_a1_rst.customer_a1"
    assert rewrite_sql("SELECT customer_a1.* FROM customer_a1.customer_a1", M, COLUMNS)[0] == \
        "SELECT customer_a1.* FROM customer_a1_rst.customer_a1"
    # quoted member, spaces and comments around the dot
    assert rewrite_sql('SELECT customer_a1 . "val" FROM customer_a1.customer_a1', M,
                       COLUMNS)[0] == 'SELECT customer_a1 . "val" FROM customer_a1_rst.customer_a1'


def test_column_qualifier_knowledge_never_hides_a_schema_reference():
    # objects of the schema, calls and three-part names stay schema references
    assert rewrite_sql("SELECT customer_a1.orders_total(1), customer_a1.customer_a1.val, "
                       "x::customer_a1.mood FROM customer_a1.orders", M, COLUMNS)[0] == \
        ("SELECT customer_a1_rst.orders_total(1), customer_a1_rst.customer_a1.val, "
         "x::customer_a1_rst.mood FROM customer_a1_rst.orders")
    # a member that is not a column of the table named like the schema
    assert rewrite_sql("INSERT INTO customer_a1.audit VALUES (1)", M, COLUMNS)[0] == \
        "INSERT INTO customer_a1_rst.audit VALUES (1)"
    # a member that is no known column stays a schema reference
    assert rewrite_sql('SELECT "Tenant B".val FROM t', M, COLUMNS)[0] == \
        'SELECT "Tenant B_rst".val FROM t'


def test_row_reference_named_like_the_schema_is_left_alone():
    # `tenant.*` is a row, never a schema; an alias or variable named like the
    # schema qualifies the columns the catalog lists
    assert rw("SELECT customer_a1.* FROM customer_a1.orders customer_a1") == \
        "SELECT customer_a1.* FROM customer_a1_rst.orders customer_a1"
    assert rewrite_sql("SELECT sum(customer_a1.amount) FROM customer_a1.orders AS customer_a1",
                       M, {"customer_a1": {"amount"}})[0] == \
        "SELECT sum(customer_a1.amount) FROM customer_a1_rst.orders AS customer_a1"


# -- comments and literals --------------------------------------------------

def test_line_comments_untouched():
    unchanged("SELECT 1 -- reads customer_a1.orders\n")
    assert rw("-- customer_a1.x\nSELECT customer_a1.x") == "-- customer_a1.x\nSELECT customer_a1_rst.x"


def test_nested_block_comments_untouched():
    text = "/* outer /* customer_a1.inner */ still customer_a1.comment */ SELECT customer_a1.t"
    assert rw(text) == \
        "/* outer /* customer_a1.inner */ still customer_a1.comment */ SELECT customer_a1_rst.t"


def test_literal_that_only_contains_the_name_is_untouched():
    unchanged("SELECT 'customer_a1 default', 'hello from customer_a1', 'customer_a1_ref'")
    unchanged("SELECT 'the customer_a1 -- tenant', 'Tenant B rocks', 'Tenant B_ref'")


def test_literal_whose_whole_value_is_the_name_is_rewritten():
    # format('%I.%I', 'tenant', t) and friends: the literal *is* the schema name.
    assert rw("SELECT format('%I.%I', 'customer_a1', t)") == \
        "SELECT format('%I.%I', 'customer_a1_rst', t)"
    assert rw("SELECT format('%I.%I', 'Tenant B', t)") == \
        "SELECT format('%I.%I', 'Tenant B_rst', t)"
    # exact value only: case matters inside literals
    unchanged("SELECT format('%I.%I', 'CUSTOMER_A1', t), 'tenant b'")


def test_dynamic_sql_string_is_rewritten():
    assert rw("EXECUTE 'INSERT INTO customer_a1.audit(msg) VALUES ($1)' USING m") == \
        "EXECUTE 'INSERT INTO customer_a1_rst.audit(msg) VALUES ($1)' USING m"
    assert rw("""EXECUTE 'SELECT * FROM "Tenant B".t WHERE x = ''y'''""") == \
        """EXECUTE 'SELECT * FROM "Tenant B_rst".t WHERE x = ''y'''"""


def test_dynamic_sql_fragments_with_unbalanced_quotes():
    # concatenated fragments: the unterminated quote inside is not rewritten nor closed
    assert rw("EXECUTE 'INSERT INTO customer_a1.t VALUES (''' || v || ''')'") == \
        "EXECUTE 'INSERT INTO customer_a1_rst.t VALUES (''' || v || ''')'"
    unchanged("RAISE NOTICE 'it''s customer_a1.orders'")
    unchanged("RAISE NOTICE 'say \"customer_a1.orders'")


def test_unbalanced_dollar_inside_a_literal_is_left_alone():
    unchanged("RAISE NOTICE 'costs $$ money'")
    unchanged("SELECT '$$', '$tag$ customer_a1.t'")


def test_e_strings():
    assert rw(r"EXECUTE E'INSERT INTO customer_a1.t VALUES (\'x\')'") == \
        "EXECUTE E'INSERT INTO customer_a1_rst.t VALUES (''x'')'"
    assert rw("SELECT E'customer_a1'") == "SELECT E'customer_a1_rst'"
    # backslashes survive a rewrite (E'' keeps its meaning whatever
    # standard_conforming_strings says)
    assert rw(r"EXECUTE e'SELECT customer_a1.f(''a\\b'')'") == \
        r"EXECUTE E'SELECT customer_a1_rst.f(''a\\b'')'"
    unchanged(r"SELECT E'customer_a1 \'default\'', E'\n customer_a1'")
    # byte escapes we cannot decode: the literal is left exactly as it was
    unchanged(r"SELECT E'\xc3\xa9 customer_a1.t'")


def test_e_string_prefix_belongs_to_a_word():
    # `name'x'` is not an E'' string; the quote starts a plain literal
    assert rw("SELECT typee'customer_a1'") == "SELECT typee'customer_a1_rst'"


# -- dollar quoting and parameters -----------------------------------------

def test_dollar_bodies_any_tag():
    assert rw("AS $_$ SELECT * FROM customer_a1.t $_$") == "AS $_$ SELECT * FROM customer_a1_rst.t $_$"
    assert rw("AS $body$ BEGIN PERFORM customer_a1.f(); END $body$") == \
        "AS $body$ BEGIN PERFORM customer_a1_rst.f(); END $body$"


def test_nested_dollar_tags():
    text = ("AS $outer$ BEGIN EXECUTE $q$ DELETE FROM customer_a1.t WHERE note = 'a $$ b' $q$; "
            "RAISE NOTICE $m$customer_a1 done$m$; END $outer$")
    assert rw(text) == text.replace("FROM customer_a1.t", "FROM customer_a1_rst.t")


def test_positional_parameters_are_not_dollar_tags():
    assert rw("SELECT $1 + customer_a1.f($2) WHERE id = $10") == \
        "SELECT $1 + customer_a1_rst.f($2) WHERE id = $10"
    assert rw("AS $$ SELECT customer_a1.f($1, $2) $$") == \
        "AS $$ SELECT customer_a1_rst.f($1, $2) $$"


def test_dollar_inside_identifier():
    unchanged("SELECT a$customer_a1$ FROM t")


def test_quoted_identifier_with_dot_inside():
    unchanged('SELECT "customer_a1.orders" FROM t')


def test_procedure_with_inner_semicolons():
    text = ("CREATE OR REPLACE PROCEDURE customer_a1_rst.p()\n LANGUAGE plpgsql\nAS $procedure$"
            "BEGIN UPDATE customer_a1.stock SET q = q - 1; INSERT INTO customer_a1.log VALUES "
            "('x;y'); END;$procedure$\n")
    assert rw(text) == text.replace("customer_a1.", "customer_a1_rst.")


# -- search_path ------------------------------------------------------------

def test_set_search_path_clause_of_a_function_definition():
    text = ("CREATE OR REPLACE FUNCTION customer_a1_rst.f()\n RETURNS bigint\n LANGUAGE sql\n"
            " SET search_path TO 'customer_a1', 'customer_a1_ref', 'public'\n"
            "AS $function$ SELECT count(*) FROM orders $function$\n")
    assert rw(text) == text.replace("'customer_a1',", "'customer_a1_rst',")


def test_search_path_with_quoted_mixed_case_element():
    assert rw("""SET search_path TO '"Tenant B"', 'public'""") == \
        """SET search_path TO '"Tenant B_rst"', 'public'"""
    assert rw('SET search_path = "Tenant B", "$user", public') == \
        'SET search_path = "Tenant B_rst", "$user", public'


def test_bare_search_path_elements():
    assert rw("SET LOCAL search_path = customer_a1, customer_a1_ref; SELECT customer_a1") == \
        "SET LOCAL search_path = customer_a1_rst, customer_a1_ref; SELECT customer_a1"


def test_set_config_search_path():
    assert rw("PERFORM set_config('search_path', 'customer_a1, public', true)") == \
        "PERFORM set_config('search_path', 'customer_a1_rst, public', true)"
    assert rw("""PERFORM set_config('search_path', '"Tenant B",public', true)""") == \
        """PERFORM set_config('search_path', '"Tenant B_rst",public', true)"""
    assert rw("PERFORM set_config('SEARCH_PATH', 'customer_a1', true)") == \
        "PERFORM set_config('SEARCH_PATH', 'customer_a1_rst', true)"


def test_search_path_context_of_a_proconfig_value():
    rewriter = Rewriter(M)
    assert rewriter.rewrite('customer_a1, "Tenant B", customer_a1_ref', search_path_context=True) \
        == 'customer_a1_rst, "Tenant B_rst", customer_a1_ref'
    assert len(rewriter.changes) == 2


def test_search_path_context_ends_at_semicolon():
    assert rw("SET search_path = customer_a1; SELECT customer_a1 FROM t") == \
        "SET search_path = customer_a1_rst; SELECT customer_a1 FROM t"


# -- several schemas, idempotence ------------------------------------------

def test_several_schemas_one_pass_no_chaining():
    mapping = {"a": "b", "b": "c"}
    assert rw("SELECT a.x, b.y", mapping) == "SELECT b.x, c.y"


def test_rewriting_twice_changes_nothing_more():
    once = rw("SELECT customer_a1.f(), 'customer_a1', \"Tenant B\".t")
    unchanged(once)


def test_empty_and_plain_text():
    unchanged("")
    unchanged("SELECT 1")
    unchanged("customer_a1")  # bare name outside search_path: a column or variable
