# plot.awk: the ratios of a benchmark run as an SVG bar chart.
# Input: lines "label<TAB>value<TAB>target<TAB>note"; a bar per line, its
# target as a red mark; bars at or under their target are green.
# Usage: awk -F'\t' -v title="..." -f plot.awk ratios.tsv > ratios.svg
BEGIN { n = 0; max = 0 }
NF >= 3 {
    n++; label[n] = $1; value[n] = $2 + 0; target[n] = $3 + 0; note[n] = $4
    if (value[n] > max) max = value[n]
    if (target[n] > max) max = target[n]
}
function esc(s) { gsub(/&/, "\\&amp;", s); gsub(/</, "\\&lt;", s); gsub(/>/, "\\&gt;", s); return s }
END {
    left = 330; width = 360; row = 30; top = 40
    scale = width / (max * 1.15)
    h = top + n * row + 40
    printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", left + width + 90, h
    printf "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
    printf "<text x=\"10\" y=\"22\" font-size=\"14\" font-weight=\"bold\">%s</text>\n", esc(title)
    for (i = 1; i <= n; i++) {
        y = top + (i - 1) * row
        color = value[i] <= target[i] ? "#4a9a5a" : "#c0504d"
        printf "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>\n", left - 8, y + 15, esc(label[i])
        printf "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"18\" fill=\"%s\"/>\n", left, y + 3, value[i] * scale, color
        printf "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#222\" stroke-width=\"2\" stroke-dasharray=\"3,2\"/>\n", left + target[i] * scale, y, left + target[i] * scale, y + 24
        printf "<text x=\"%.1f\" y=\"%d\">%s%s</text>\n", left + value[i] * scale + 6, y + 16, value[i], note[i] == "" ? "" : " " esc(note[i])
    }
    printf "<text x=\"%d\" y=\"%d\" fill=\"#444\">bar: measured; dashed line: target (at most); green: target met</text>\n", left, h - 12
    printf "</svg>\n"
}
