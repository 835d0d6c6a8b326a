// pgJDBC (Debian's libpostgresql-jdbc-java) on Debian's JDK: the catalogue
// signs its lead in as doc/drivers.md shows, staff look a patron up and move
// them (rolled back), a reporting role reads member_summary and its column
// comments (DatabaseMetaData.getColumns REMARKS).
// The PGD_* environment is described in test/drivers/README.md.
import java.sql.*;
import java.util.*;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;
import static java.nio.charset.StandardCharsets.UTF_8;

public class PgJdbc {
    static final Map<String, String> E = System.getenv();
    static final boolean POOLED = "1".equals(E.get("PGD_POOLED"));
    static final List<String> failures = new ArrayList<>(), findings = new ArrayList<>();
    static int checks = 0;

    static void check(String label, boolean ok, Object detail) {
        checks++;
        if (!ok) failures.add(label + ": " + detail);
    }

    static List<Long> ids(String s) {
        List<Long> l = new ArrayList<>();
        for (String x : s.split(",")) if (!x.isEmpty()) l.add(Long.parseLong(x));
        Collections.sort(l);
        return l;
    }

    static Connection connect(String user) throws SQLException {
        // behind pgbouncer: prepareThreshold=0 (doc/drivers.md)
        Connection c = DriverManager.getConnection("jdbc:postgresql://" + E.get("PGD_HOST") + ":" + E.get("PGD_PORT")
                + "/" + E.get("PGD_DBNAME") + "?user=" + user + "&ApplicationName=050_drivers%20pgJDBC"
                + (POOLED ? "&prepareThreshold=0" : ""));
        c.setAutoCommit(false);
        return c;
    }

    static List<Long> longs(PreparedStatement st, int column) throws SQLException {
        List<Long> l = new ArrayList<>();
        try (ResultSet r = st.executeQuery()) { while (r.next()) l.add(r.getLong(column)); }
        return l;
    }

    public static void main(String[] args) throws Exception {
        String name = "pgJDBC " + (POOLED ? "pgbouncer" : "direct");
        String token = E.get("PGD_TOKEN");
        long lead = Long.parseLong(token.split("\\.")[1]);
        long group = Long.parseLong(E.get("PGD_GROUP")), consenting = Long.parseLong(E.get("PGD_CONSENTING"));
        Set<Long> backends = new HashSet<>();

        // (1) the catalogue: eight transactions on one connection, each signing in again
        Connection db = connect(E.get("PGD_OPAC")), hold = connect(E.get("PGD_OPAC"));
        PreparedStatement members = db.prepareStatement(
                "SELECT member_id FROM patron_group.group_members(?) WHERE member_id IS NOT NULL ORDER BY 1");
        PreparedStatement loans = db.prepareStatement("SELECT id, patron FROM ils.circulation ORDER BY id");
        PreparedStatement bills = db.prepareStatement("SELECT id FROM ils.billing ORDER BY id");
        for (int i = 1; i <= 8; i++) {
            if (i % 2 == 1) {   // another client holds a server connection: the pool must use another one
                ResultSet h = hold.createStatement().executeQuery("SELECT patron_group.current_patron()");
                h.next();
                h.getLong(1);
                check("tx " + i + ": the other client acts for nobody", h.wasNull(), "");
            }
            ResultSet s = db.createStatement().executeQuery("SELECT patron_group.current_patron(), pg_backend_pid()");
            s.next();
            String acting = s.getString(1);
            backends.add(s.getLong(2));
            check("tx " + i + ": nobody asserted at its start", acting == null, "current_patron() = " + acting);
            ResultSet r = db.createStatement().executeQuery("SELECT patron_group.token_nonce()");
            r.next();
            String nonce = r.getString(1);
            String[] field = token.split("\\.");
            Mac hmac = Mac.getInstance("HmacSHA256");
            hmac.init(new SecretKeySpec(token.getBytes(UTF_8), "HmacSHA256"));
            PreparedStatement proof = db.prepareStatement("SELECT patron_group.act_as_proof(?, ?, ?)");
            proof.setLong(1, Long.parseLong(field[1]));
            proof.setLong(2, Long.parseLong(field[2]));
            proof.setString(3, HexFormat.of().formatHex(hmac.doFinal(nonce.getBytes(UTF_8))));
            ResultSet p = proof.executeQuery();
            p.next();
            check("tx " + i + ": act_as_proof", p.getLong(1) == lead, p.getLong(1));
            members.setLong(1, lead);
            List<Long> m = longs(members, 1);
            check("tx " + i + ": group_members", m.equals(ids(E.get("PGD_MEMBERS"))), m);
            List<Long> l = new ArrayList<>(), owners = new ArrayList<>();
            try (ResultSet lr = loans.executeQuery()) {
                while (lr.next()) { l.add(lr.getLong(1)); owners.add(lr.getLong(2)); }
            }
            check("tx " + i + ": loans", l.equals(ids(E.get("PGD_LOANS"))), l);
            check("tx " + i + ": the consenting member's loans", owners.contains(consenting), owners);
            check("tx " + i + ": no loan of the other member",
                    Collections.disjoint(l, ids(E.get("PGD_OTHER_LOANS"))), l);
            List<Long> b = longs(bills, 1);
            check("tx " + i + ": bills", b.equals(ids(E.get("PGD_BILLS"))), b);
            check("tx " + i + ": no bill of the other member",
                    Collections.disjoint(b, ids(E.get("PGD_OTHER_BILLS"))), b);
            db.commit();
            if (i % 2 == 1) hold.commit();
        }
        ResultSet a = db.createStatement().executeQuery(
                "SELECT patron_group.current_patron(), (SELECT count(*) FROM ils.circulation)");
        a.next();
        check("after: acts for nobody, sees no loan", a.getString(1) == null && a.getLong(2) == 0, a.getString(1));
        db.commit();
        if (POOLED)
            check("the pool served the transactions from several server connections", backends.size() > 1, backends);
        db.close();
        hold.close();

        // (2) staff: find a patron by a barcode typed badly, move them, roll back
        Connection staff = connect(E.get("PGD_STAFF"));
        long moved = Long.parseLong(E.get("PGD_BARCODE_PATRON"));
        PreparedStatement sm = staff.prepareStatement(
                "SELECT member_id FROM patron_group.group_members(?) WHERE member_id IS NOT NULL");
        sm.setLong(1, lead);
        PreparedStatement find = staff.prepareStatement(
                "SELECT patron_id, display_name FROM patron_group.find_patron(?)");
        find.setString(1, E.get("PGD_BARCODE"));
        ResultSet f = find.executeQuery();
        f.next();
        check("find_patron", f.getLong(1) == moved && E.get("PGD_BARCODE_NAME").equals(f.getString(2)),
                f.getLong(1) + " " + f.getString(2));
        try {
            PreparedStatement move = staff.prepareStatement("SELECT patron_group.move_to_group(?, into_group_of => ?)");
            move.setLong(1, moved);   // JDBC's ordinary binding: the parameter is typed int8
            move.setLong(2, lead);
            List<Long> g = longs(move, 1);
            check("move_to_group (plain parameters)", g.equals(List.of(group)), g);
            check("group_members after the move", longs(sm, 1).contains(moved), "");
        } catch (SQLException e) {
            ("42725".equals(e.getSQLState()) ? findings : failures).add(
                    "move_to_group (plain parameters): " + e.getSQLState() + " " + e.getMessage().split("\n")[0]);
        }
        staff.rollback();
        // labelled: the same move with explicit casts
        PreparedStatement cast = staff.prepareStatement(
                "SELECT patron_group.move_to_group(?::bigint, into_group_of => ?::bigint)");
        cast.setLong(1, moved);
        cast.setLong(2, lead);
        List<Long> g = longs(cast, 1);
        check("cast: move_to_group(?::bigint, ...)", g.equals(List.of(group)), g);
        check("cast: group_members after the move", longs(sm, 1).contains(moved), "");
        staff.rollback();
        check("after ROLLBACK the patron is not in the group", !longs(sm, 1).contains(moved), "");
        staff.rollback();
        staff.close();

        // (3) reporting: member_summary with a filter; column comments from
        // pg_description and from DatabaseMetaData.getColumns (REMARKS)
        Connection rep = connect(E.get("PGD_REPORTER"));
        PreparedStatement ms = rep.prepareStatement("SELECT patron_id, is_lead, circulations_shared_now,"
                + " bills_shared_now FROM patron_group.member_summary WHERE group_id = ? ORDER BY patron_id");
        ms.setLong(1, group);
        Map<Long, String> rows = new TreeMap<>();
        try (ResultSet r = ms.executeQuery()) {
            while (r.next()) rows.put(r.getLong(1), "" + r.getBoolean(2) + r.getBoolean(3) + r.getBoolean(4));
        }
        check("member_summary: the group's members", new ArrayList<>(rows.keySet()).equals(ids(E.get("PGD_MEMBERS"))), rows);
        check("member_summary: lead and consents", rows.getOrDefault(lead, "").startsWith("true")
                && "falsetruetrue".equals(rows.get(consenting))
                && "falsefalsefalse".equals(rows.get(Long.parseLong(E.get("PGD_OTHER")))), rows);
        Map<String, String> comments = new TreeMap<>(), remarks = new TreeMap<>();
        try (ResultSet r = rep.createStatement().executeQuery(
                "SELECT a.attname, col_description(a.attrelid, a.attnum) FROM pg_attribute a"
                + " WHERE a.attrelid = 'patron_group.member_summary'::regclass AND a.attnum > 0"
                + " AND NOT a.attisdropped ORDER BY a.attnum")) {
            while (r.next()) comments.put(r.getString(1), r.getString(2));
        }
        check("pg_description: every column has a comment", !comments.isEmpty() && !comments.containsValue(null), comments);
        check("pg_description: group_id's comment", E.get("PGD_COMMENT").equals(comments.get("group_id")), comments.get("group_id"));
        try (ResultSet r = rep.getMetaData().getColumns(null, "patron_group", "member_summary", "%")) {
            while (r.next()) remarks.put(r.getString("COLUMN_NAME"), r.getString("REMARKS"));
        }
        check("getColumns: REMARKS are the comments, column by column", remarks.equals(comments), remarks);
        rep.rollback();
        rep.close();

        for (String x : findings) System.out.println(name + ": FINDING " + x);
        for (String x : failures) System.out.println(name + ": FAIL " + x);
        System.out.println(name + ": " + (checks - failures.size()) + "/" + checks + " checks passed, backends "
                + backends.size() + (findings.isEmpty() ? "" : ", " + findings.size() + " finding(s)"));
        System.exit(!failures.isEmpty() ? 1 : !findings.isEmpty() ? 2 : 0);
    }
}
