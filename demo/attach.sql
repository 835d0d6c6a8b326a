-- How the sample library's tables are attached (scripts/demo.sh, and the
-- lifecycle tests, which build the same library).
SELECT patron_group.attach_patrons('ils.patron',
         id_column      => 'id',
         name_columns   => '{family_name,given_name}',
         clone_columns  => '{family_name,street,city,postal_code,phone,home_library}');
SELECT patron_group.attach_cards('ils.card',
         patron_column  => 'patron',
         barcode_column => 'barcode',
         active_when    => 'active');
SELECT patron_group.attach_circulations('ils.circulation',
         patron_column  => 'patron',
         due_column     => 'due_at',
         open_when      => 'checkin_at IS NULL',
         lost_when      => 'stop_fines = ''LOST''');
SELECT patron_group.attach_money('ils.billing', kind => 'charge',
         amount_column  => 'amount',
         patron_column  => 'xact',
         via => 'ils.transaction', via_id_column => 'id', via_patron_column => 'patron',
         counts_when    => 'NOT voided');
SELECT patron_group.attach_money('ils.payment', kind => 'payment',
         amount_column  => 'amount',
         patron_column  => 'xact',
         via => 'ils.transaction', via_id_column => 'id', via_patron_column => 'patron',
         counts_when    => 'NOT voided');
