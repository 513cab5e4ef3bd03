-- Run by psql -f directly and through Warden: the outputs must be identical.
CREATE TABLE people (id int PRIMARY KEY, name text NOT NULL, photo bytea, born date, score numeric(10, 2), tags text[]);
INSERT INTO people SELECT g, 'person ' || g, decode(md5(g::text), 'hex'), date '1990-01-01' + g, g * 1.5, ARRAY['a' || g, NULL] FROM generate_series(1, 500) g;
SELECT count(*), sum(id), max(name) FROM people;
SELECT id, name, photo, born, score, tags FROM people WHERE id <= 5 ORDER BY id;
SELECT NULL::text IS NULL AS is_null, ''::text = '' AS empty_is_not_null;
SELECT 1 / 0;
SELECT 'the session goes on after an error';
BEGIN;
UPDATE people SET name = 'changed' WHERE id = 1;
SELECT name FROM people WHERE id = 1;
SELECT no_such_column FROM people;
SELECT 'ignored in a failed transaction';
ROLLBACK;
SELECT name FROM people WHERE id = 1;
BEGIN;
SAVEPOINT s1;
DELETE FROM people WHERE id = 2;
ROLLBACK TO SAVEPOINT s1;
COMMIT;
SELECT count(*) FROM people WHERE id = 2;
DO $$ BEGIN RAISE NOTICE 'a notice from %', 'plpgsql'; END $$;
SELECT $tag$ dollar 'quoted' ; text $tag$;
SELECT length(repeat('x', 1000000));
SELECT string_agg(name, ',' ORDER BY id) FROM people WHERE id BETWEEN 10 AND 20;
\copy people (id, name) TO STDOUT WITH (FORMAT csv)
\copy (SELECT id, score FROM people WHERE id < 4) TO STDOUT
CREATE TABLE copied (id int, name text);
\copy copied FROM 'test/proxy/corpus/rows.csv' WITH (FORMAT csv)
SELECT * FROM copied ORDER BY id;
\copy copied FROM 'test/proxy/corpus/bad-rows.csv' WITH (FORMAT csv)
SELECT count(*) FROM copied;
SET search_path TO pg_catalog;
SHOW search_path;
RESET search_path;
PREPARE by_id (int) AS SELECT name FROM people WHERE id = $1;
EXECUTE by_id(42);
DEALLOCATE by_id;
SELECT pg_sleep(0.01);
