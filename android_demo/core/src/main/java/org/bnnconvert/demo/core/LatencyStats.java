package org.bnnconvert.demo.core;

import java.util.Arrays;

/** Summary of repeated inference timings, in milliseconds. */
public final class LatencyStats {
    public final int runs;
    public final double medianMs;
    public final double meanMs;
    public final double minMs;
    public final double maxMs;

    private LatencyStats(int runs, double median, double mean, double min, double max) {
        this.runs = runs;
        this.medianMs = median;
        this.meanMs = mean;
        this.minMs = min;
        this.maxMs = max;
    }

    /**
     * Statistics of {@code nanos} (one duration per run). The median of an even count is the mean
     * of the two middle values.
     */
    public static LatencyStats ofNanos(long[] nanos) {
        if (nanos.length == 0) {
            throw new IllegalArgumentException("no timings");
        }
        long[] sorted = nanos.clone();
        Arrays.sort(sorted);
        int n = sorted.length;
        double median =
                n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + (double) sorted[n / 2]) / 2.0;
        double sum = 0;
        for (long v : sorted) {
            sum += v;
        }
        return new LatencyStats(n, median / 1e6, sum / n / 1e6, sorted[0] / 1e6, sorted[n - 1] / 1e6);
    }

    @Override
    public String toString() {
        return String.format(
                java.util.Locale.ROOT,
                "median %.2f ms over %d runs (min %.2f, mean %.2f, max %.2f)",
                medianMs, runs, minMs, meanMs, maxMs);
    }
}
