-- balance_owed is amount_billed - amount_paid of patron_group.accounts
SELECT count(*) FROM patron_group.accounts a WHERE a.amount_billed - a.amount_paid > 5;
