/* patron_group 1.0 -> 1.1 */

\echo Use "ALTER EXTENSION patron_group UPDATE TO '1.1'" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Barcode normalizer: normalized results are stable
-- ---------------------------------------------------------------------------

-- normalize_barcode() now strips invisible characters before folding as
-- well as after, and folds again what stripping brought together, so that
-- a normalized barcode normalizes to itself.  Barcodes with a control or
-- format character before a combining mark, or with a spacing diacritic,
-- normalize differently from 1.0: rebuild the expression indexes that hold
-- the 1.0 results.
DO $$
DECLARE
    idx regclass;
BEGIN
    FOR idx IN SELECT barcode_index FROM @extschema@.attachments
                WHERE barcode_index IS NOT NULL ORDER BY relid::oid
    LOOP
        EXECUTE pg_catalog.format('REINDEX INDEX %s', idx);
    END LOOP;
END
$$;
