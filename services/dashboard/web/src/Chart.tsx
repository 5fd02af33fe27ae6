import { useEffect, useRef } from "react";
import uPlot from "uplot";

export interface ChartSeries {
  label: string;
  color: string;
  /** One value per x; null leaves a gap. */
  values: (number | null)[];
}

/** Colors that stay apart for the common kinds of color blindness (Okabe–Ito). */
export const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"];

const HEIGHT = 240;
const plainNumber = (value: number) => String(value);

/**
 * A uPlot chart over times in seconds. uPlot draws on a canvas, so the figure carries a label
 * and the number of points with data (`data-points`, which the browser tests read), and
 * its legend lists the series with their values under the pointer.
 */
export function Chart({
  title,
  xs,
  series,
  bars = false,
  formatValue = plainNumber,
}: {
  title: string;
  xs: number[];
  series: ChartSeries[];
  bars?: boolean;
  formatValue?: (value: number) => string;
}) {
  const container = useRef<HTMLDivElement>(null);
  /** The points that carry data (not a gap, not a zero). */
  const points = series.reduce(
    (sum, line) => sum + line.values.filter((value) => value !== null && value !== 0).length,
    0,
  );

  useEffect(() => {
    const element = container.current;
    if (element === null) return;
    const step = xs.length > 1 ? Math.min(...xs.slice(1).map((x, i) => x - xs[i]!)) : 86_400;
    const options: uPlot.Options = {
      width: Math.max(element.clientWidth, 320),
      height: HEIGHT,
      scales: bars
        ? {
            // Half a step of room either side, so the first and last bars are whole, and bars from 0.
            x: { time: true, range: (_, min, max) => [min - step / 2, max + step / 2] },
            y: { range: (_, __, max) => [0, max > 0 ? max * 1.1 : 1] },
          }
        : { x: { time: true } },
      axes: [{}, { values: (_, ticks) => ticks.map(formatValue), size: 70 }],
      series: [
        {},
        ...series.map((line) => ({
          label: line.label,
          stroke: line.color,
          fill: bars ? `${line.color}99` : undefined,
          width: 2,
          points: { show: xs.length < 60 },
          value: (_: uPlot, value: number | null) => (value === null ? "—" : formatValue(value)),
          ...(bars ? { paths: uPlot.paths.bars!({ size: [0.6, 40] }) } : {}),
        })),
      ],
    };
    const plot = new uPlot(options, [xs, ...series.map((line) => line.values)] as uPlot.AlignedData, element);
    const resize = new ResizeObserver(() =>
      plot.setSize({ width: Math.max(element.clientWidth, 320), height: HEIGHT }),
    );
    resize.observe(element);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [xs, series, bars, formatValue]);

  return (
    <figure className="chart" aria-label={title} data-points={points}>
      <figcaption>{title}</figcaption>
      {points === 0 ? <p className="muted">No data in this range.</p> : <div ref={container} />}
    </figure>
  );
}
