-- balance_owed is kept in patron_group.accounts
SELECT count(*) FROM patron_group.accounts a WHERE a.balance_owed > 5;
