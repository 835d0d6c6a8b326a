-- Barcodes: ICU normalization, and the resolver every lookup goes through.
SELECT input, patron_group.normalize_barcode(input) AS normalized
  FROM (VALUES
    ('29000000000101'),
    (E'２９０００００００００１０１'),          -- full-width digits
    (E' 2900 0000 0001 01 '),                  -- stray spaces
    (E'\t29000000000101\n'),                  -- tab and newline from a scanner
    (E'2900\u00A00000\u20030001\u300001'),    -- no-break, em and ideographic spaces
    (E'2900\u200B0000\u200D0001\uFEFF01'),    -- zero-width space, joiner, BOM
    (E'29000000000101\u00AD'),                -- soft hyphen
    ('AbC-77'), (E'ＡＢＣ－７７'), ('abc-77'),  -- case and full-width letters
    ('Straße'), (E'ﬁ-9'), (E'Å'), (E'A\u030A'),  -- folding and composition
    (''), ('   ')
  ) AS t(input);
SELECT patron_group.normalize_barcode(NULL) IS NULL AS null_in_null_out;
SELECT length(patron_group.normalize_barcode(repeat(E'9 \u200B', 100000))) AS long_input;

-- lookups by card barcode (Evergreen shape attached by the previous test)
SELECT * FROM patron_group.find_patron('29000000000101');
SELECT * FROM patron_group.find_patron(E'２９０００ ０００ ０００１０２');
SELECT patron_group.resolve_barcode(E' 29000000000103\u200B');
SELECT try($$SELECT patron_group.resolve_barcode('29000000009999')$$);  -- inactive card
SELECT try($$SELECT patron_group.resolve_barcode('nobody')$$);
SELECT try($$SELECT patron_group.resolve_barcode(E' \u200B ')$$);
SELECT try($$SELECT patron_group.resolve_barcode(NULL)$$);
SELECT try($$SELECT * FROM patron_group.find_patron(NULL)$$);

-- a barcode shared by two patrons (the same card typed two ways)
INSERT INTO ev.card (usr, barcode) VALUES (104, '29000000000-XY'), (103, '29000000000-xy');
SELECT try($$SELECT patron_group.resolve_barcode('29000000000-XY')$$);
DELETE FROM ev.card WHERE barcode ILIKE '29000000000-xy';

-- the lookup uses the expression index
SET enable_seqscan = off;
EXPLAIN (COSTS OFF)
SELECT usr FROM ev.card
 WHERE patron_group.normalize_barcode(barcode) = patron_group.normalize_barcode('29000000000101');
RESET enable_seqscan;
