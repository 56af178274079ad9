package org.bnnconvert.demo.core;

import static org.junit.Assert.assertEquals;

import java.util.Arrays;
import java.util.Collections;
import org.junit.Test;

public class LceOpsTest {
    @Test
    public void lceOpsAreResolvedOthersAreNot() {
        assertEquals(Collections.emptyList(),
                LceOps.unsupported(Arrays.asList("LceQuantize", "LceBconv2d", "LceDequantize")));
        assertEquals(Arrays.asList("FlexConv2D", "MyOp"),
                LceOps.unsupported(Arrays.asList("LceBconv2d", "FlexConv2D", "MyOp", "FlexConv2D")));
    }
}
