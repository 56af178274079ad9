package org.bnnconvert.demo.core;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

/** The custom operators LCE's Android library registers, and a check against a model's. */
public final class LceOps {
    /** Custom op codes registered by LCE's {@code RegisterLCECustomOps}. */
    public static final Set<String> REGISTERED =
            Collections.unmodifiableSet(
                    new LinkedHashSet<String>(
                            Arrays.asList(
                                    "LceQuantize", "LceDequantize", "LceBconv2d", "LceBMaxPool2d")));

    private LceOps() {}

    /** Custom ops of the model that no runtime this app ships can resolve (distinct, in order). */
    public static List<String> unsupported(List<String> customOps) {
        Set<String> missing = new LinkedHashSet<String>();
        for (String op : customOps) {
            if (!REGISTERED.contains(op)) {
                missing.add(op);
            }
        }
        return new ArrayList<String>(missing);
    }
}
