-- The extension attached to the same library, families grouped.
CREATE EXTENSION patron_group;
SELECT patron_group.attach_patrons('patron', name_columns => '{family_name,given_name}');
SELECT patron_group.attach_circulations('circulation', 'patron', 'due_at',
    open_when => 'checkin_at IS NULL', lost_when => 'stop_fines = ''LOST''');
SELECT patron_group.attach_money('billing', 'charge', 'amount', 'patron', counts_when => 'NOT voided');
SELECT patron_group.attach_money('payment', 'payment', 'amount', 'patron', counts_when => 'NOT voided');
SELECT count(*) AS groups FROM (
    SELECT patron_group.move_to_group(array_agg(member) FILTER (WHERE member <> lead), lead)
      FROM family GROUP BY lead) s;
SELECT count(patron_group.set_lead(lead)) AS leads FROM (SELECT DISTINCT lead FROM family) f;
-- lead access: the family of 6 (patrons 15-20) share their loans with their lead
CREATE ROLE bench_opac LOGIN;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO bench_opac;
GRANT EXECUTE ON FUNCTION patron_group.act_as(bigint) TO bench_opac;
SELECT patron_group.register_patron_facing('bench_opac');
SELECT count(patron_group.set_consent(m, 'circulations', true)) FROM generate_series(16, 20) m;
VACUUM ANALYZE;
