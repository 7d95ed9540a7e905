-- Tables that must migrate whatever their shape: no key, composite key, text key, empty, partitioned,
-- and identifiers that clash with SQL, with bulkmig's own aliases and metadata names, or need quoting.
CREATE TABLE no_key (a int, b text);
INSERT INTO no_key SELECT g % 10, 'row ' || g FROM generate_series(1, 3000) g;
INSERT INTO no_key SELECT 1, 'row 1' FROM generate_series(1, 5);            -- duplicate rows
CREATE TABLE composite (a int, b text, c numeric, PRIMARY KEY (a, b));
INSERT INTO composite SELECT g % 100, 'k' || g, g / 7.0 FROM generate_series(1, 5000) g;
CREATE TABLE text_key (k text PRIMARY KEY, v jsonb);
INSERT INTO text_key SELECT md5(g::text), jsonb_build_object('g', g) FROM generate_series(1, 5000) g;
CREATE TABLE empty_one (id int PRIMARY KEY, v text);
CREATE TABLE parted (id int, day date, v text, PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
CREATE TABLE parted_2024 PARTITION OF parted FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE parted_2025 PARTITION OF parted FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO parted SELECT g, '2024-01-01'::date + g % 700, 'v' || g FROM generate_series(1, 4000) g;
CREATE SCHEMA "Odd Schema";
CREATE TABLE "Odd Schema"."Order Items/ü ""q""" ("Op" text, op int, "__op" text, "select" int PRIMARY KEY, "v0" int, "k__" text);
INSERT INTO "Odd Schema"."Order Items/ü ""q""" SELECT 'I', g, 'D', g, -g, 'x' FROM generate_series(1, 500) g;
