"""Gives every simple glyph of a TrueType font a left edge at x = 0.

plotters 0.3.7's ab_glyph text drawing places each glyph's pixels from the left edge of its
outline, not from its origin, so glyphs lose their left side bearing and text spacing goes
uneven. A one-point contour at (0, yMin) (zero area: draws nothing) makes every outline start
at the origin, which is where plotters puts it. Usage: anchor.py IN.ttf OUT.ttf
"""
import sys

from fontTools.ttLib import TTFont

font = TTFont(sys.argv[1])
glyf, hmtx = font["glyf"], font["hmtx"]
negative = []
for name in font.getGlyphOrder():
    g = glyf[name]
    if g.isComposite() or g.numberOfContours <= 0:
        continue
    g.recalcBounds(glyf)
    if g.xMin < 0:
        negative.append(name)
        continue
    g.coordinates.append((0, g.yMin))
    g.flags.append(1)  # on-curve
    g.endPtsOfContours.append(len(g.coordinates) - 1)
    g.numberOfContours += 1
    g.recalcBounds(glyf)
    width, _ = hmtx[name]
    hmtx[name] = (width, g.xMin)
for name in font.getGlyphOrder():  # accented letters: their parts moved
    g = glyf[name]
    if g.isComposite():
        g.recalcBounds(glyf)
        hmtx[name] = (hmtx[name][0], g.xMin)
font.save(sys.argv[2])
print("left of the origin already (unchanged):", " ".join(negative) or "none")
