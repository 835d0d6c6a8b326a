-- Variant B: patron_group attached to the generated library, the families
-- grouped with move_to_group() (array form), one call per family.
CREATE EXTENSION patron_group;
SELECT patron_group.attach_patrons('patron', 'id', name_columns => '{family_name,given_name}');
SELECT patron_group.attach_circulations('circulation', 'patron', 'due_at',
         open_when => 'checkin_at IS NULL', lost_when => 'stop_fines = ''LOST''');
SELECT patron_group.attach_money('billing', 'charge', 'amount', 'patron', counts_when => 'NOT voided');
SELECT patron_group.attach_money('payment', 'payment', 'amount', 'patron', counts_when => 'NOT voided');
SELECT count(*) AS families_grouped
  FROM (SELECT patron_group.move_to_group(array_agg(id ORDER BY id), usrgroup, 'benchmark family')
          FROM patron WHERE id <> usrgroup GROUP BY usrgroup) s;
SELECT count(patron_group.set_lead(id)) AS leads
  FROM patron p WHERE id = usrgroup AND EXISTS (SELECT FROM patron m WHERE m.usrgroup = p.id AND m.id <> p.id);
VACUUM ANALYZE;
