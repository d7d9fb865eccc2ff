/**
 * A grouped bar chart as plain SVG (no dependency): one group per record size, one bar per tool, on a
 * log scale so that 100 B and 10 KiB records share an axis.
 */
export function barChartSvg(input: {
  title: string;
  groups: string[];
  series: { name: string; color: string; values: number[] }[];
  unit: string;
}): string {
  const width = 720;
  const height = 360;
  const left = 70;
  const bottom = 300;
  const top = 50;
  const all = input.series.flatMap((s) => s.values).filter((v) => v > 0 && Number.isFinite(v));
  if (all.length === 0) throw new RangeError('a chart needs at least one positive, finite value');
  const max = Math.max(...all);
  const min = Math.min(...all);
  const lo = 10 ** Math.floor(Math.log10(min));
  const hi = 10 ** Math.ceil(Math.log10(max));
  const y = (v: number) =>
    bottom -
    ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * (bottom - top);
  const groupWidth = (width - left - 20) / input.groups.length;
  const barWidth = (groupWidth * 0.8) / input.series.length;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15">${input.title}</text>`,
  ];
  for (let decade = lo; decade <= hi; decade *= 10) {
    parts.push(
      `<line x1="${left}" x2="${width - 20}" y1="${y(decade)}" y2="${y(decade)}" stroke="#ddd"/>`,
      `<text x="${left - 6}" y="${y(decade) + 4}" text-anchor="end">${decade.toLocaleString('en')}</text>`,
    );
  }
  parts.push(
    `<text x="14" y="${(top + bottom) / 2}" transform="rotate(-90 14 ${(top + bottom) / 2})" text-anchor="middle">${input.unit} (log)</text>`,
  );
  input.groups.forEach((group, g) => {
    const x0 = left + g * groupWidth + groupWidth * 0.1;
    input.series.forEach((s, i) => {
      const v = s.values[g] ?? 0;
      const x = x0 + i * barWidth;
      parts.push(
        `<rect x="${x.toFixed(1)}" y="${y(v).toFixed(1)}" width="${(barWidth - 2).toFixed(1)}" height="${(bottom - y(v)).toFixed(1)}" fill="${s.color}"><title>${s.name}: ${Math.round(v).toLocaleString('en')}</title></rect>`,
        `<text x="${(x + barWidth / 2).toFixed(1)}" y="${(y(v) - 4).toFixed(1)}" text-anchor="middle" font-size="10">${Math.round(v).toLocaleString('en')}</text>`,
      );
    });
    parts.push(
      `<text x="${x0 + (groupWidth * 0.8) / 2}" y="${bottom + 18}" text-anchor="middle">${group}</text>`,
    );
  });
  input.series.forEach((s, i) => {
    const x = left + i * 170;
    parts.push(
      `<rect x="${x}" y="${bottom + 34}" width="12" height="12" fill="${s.color}"/>`,
      `<text x="${x + 18}" y="${bottom + 44}">${s.name}</text>`,
    );
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
