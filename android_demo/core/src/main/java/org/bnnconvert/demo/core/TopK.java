package org.bnnconvert.demo.core;

import java.util.ArrayList;
import java.util.List;

/** The k best classes of a score vector. */
public final class TopK {
    /** One class and its score (a probability when the model ends in softmax). */
    public static final class Prediction {
        public final int index;
        public final String label;
        public final float score;

        Prediction(int index, String label, float score) {
            this.index = index;
            this.label = label;
            this.score = score;
        }

        @Override
        public String toString() {
            return label + " (" + index + "): " + score;
        }
    }

    private TopK() {}

    /**
     * The {@code k} highest scores, best first; equal scores keep the lower class index first.
     * Logits are turned into probabilities with a softmax first, so the app always shows
     * probabilities.
     */
    public static List<Prediction> of(float[] scores, int k, ModelMetadata metadata) {
        float[] shown = "logits".equals(metadata.scores) ? softmax(scores) : scores;
        boolean[] taken = new boolean[shown.length];
        List<Prediction> out = new ArrayList<Prediction>();
        for (int n = 0; n < Math.min(k, shown.length); n++) {
            int best = -1;
            for (int i = 0; i < shown.length; i++) {
                if (!taken[i] && (best < 0 || shown[i] > shown[best])) {
                    best = i;
                }
            }
            taken[best] = true;
            out.add(new Prediction(best, metadata.label(best), shown[best]));
        }
        return out;
    }

    /** Numerically stable softmax in double precision. */
    public static float[] softmax(float[] logits) {
        double max = Double.NEGATIVE_INFINITY;
        for (float v : logits) {
            max = Math.max(max, v);
        }
        double sum = 0;
        double[] e = new double[logits.length];
        for (int i = 0; i < logits.length; i++) {
            e[i] = Math.exp(logits[i] - max);
            sum += e[i];
        }
        float[] out = new float[logits.length];
        for (int i = 0; i < logits.length; i++) {
            out[i] = (float) (e[i] / sum);
        }
        return out;
    }
}
