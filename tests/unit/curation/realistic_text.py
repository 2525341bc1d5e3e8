"""Realistic text for the rule-filter tests: R1-style long chains of thought that re-check themselves,
code answers, Greek-letter math, multiple choice, prose without a final period, and the degenerate
loops and foreign prompts the filters exist to drop. Written by hand in the shapes real sources have
(OpenR1/DeepSeek-R1 traces, NuminaMath, MetaMathQA, GSM8K, APPS, GPQA)."""

from __future__ import annotations

# ---------------------------------------------------------------------------------------------------------
# prompts

GREEK_MATH_PROMPTS = (
    "If α+β=π/2, find sin α / cos β.",
    "If α+β=π/2 and sin α = 3/5, find the exact value of cos β + tan α.",
    "Given f(x, y) = x y + y, find ∂f/∂y",
    "Given f(x, y) = x y + y, find ∂f/∂y at the point (2, 3).",
    "Let θ be an acute angle with tan θ = 2. Compute sin 2θ and cos 2θ, and give cos 2θ as a fraction.",
    "Let $\\alpha$ and $\\beta$ be the roots of $x^2 - 5x + 6 = 0$. Find $\\alpha^2 + \\beta^2$ and $\\alpha\\beta$.",
    "For x ∈ ℝ, let g(x) = e^{λx} with λ > 0. Find λ such that g(1) = 2g(0), and express λ in terms of ln 2.",
    "Let ω ≠ 1 be a cube root of unity. Evaluate (1 + ω − ω²)(1 − ω + ω²).",
    "A fair die is rolled twice. What is the probability that the sum is 7? Express the answer as a common fraction.",
    "How many positive integers n ≤ 100 do not divide 100! / (n!)? Give the count per residue class mod 4 if needed.",
    "Let y = 3x + 2 and x y = 8 for real x and y. Find all possible values of x + y, and the sum of those values.",
    "Find the number of non-negative integer solutions (a, b, c) of a + b + c = 10 with a ≤ 4, b ≤ 5 and c ≤ 6.",
    "Solve for $x$: $\\frac{x}{2} + \\frac{x}{3} = 10$. Then find $x$ modulo $7$.",
    "Let ΔABC have sides a = 5, b = 6 and c = 7. Find the area of ΔABC using Heron's formula.",
)

FOREIGN_PROMPTS = {
    "chinese": "求满足方程 2x + 3 = 7 的实数 x 的值，并说明理由。",
    "chinese_math": "设函数 f(x)=x²-4x+3，求 f(x) 在区间 [0, 3] 上的最小值与最大值。",
    "russian": "Найдите все действительные значения x, при которых выполняется равенство 2x + 3 = 7.",
    "spanish": "¿Cuál es el valor de x si 2x + 3 = 7 y x es un número real? Explica por qué la respuesta es única.",
    "spanish_prose": "Encuentra el número de maneras en que los estudiantes pueden sentarse en una fila con las sillas disponibles.",
    "german": "Finden Sie alle reellen Zahlen x, für die die Gleichung 2x + 3 = 7 gilt, und begründen Sie, dass es nur eine gibt.",
    "greek": "Να βρείτε όλους τους πραγματικούς αριθμούς x για τους οποίους ισχύει η ισότητα 2x + 3 = 7.",
}

# ---------------------------------------------------------------------------------------------------------
# long R1-style chains of thought: re-checking restates the same equation several times, as real
# traces do. Each is 350+ words; none is degenerate.

_LINEAR_COT = """<think>
Okay, so I need to solve 3x + 5 = 20 for x. Let me start by isolating the term with x. If I subtract 5 from both sides, I get 3x + 5 - 5 = 20 - 5, which simplifies to 3x = 15. Then I divide both sides by 3, so x = 15/3 = 5.

Wait, let me verify: 3x + 5 = 20 so x = 5. Plugging x = 5 back in, 3 times 5 is 15, and 15 plus 5 is 20. That matches the right-hand side, so x = 5 works.

Hmm, but the problem also asks for the value of 2x - 1. Since x = 5, 2x - 1 = 2 times 5 minus 1, which is 10 - 1 = 9. Let me double-check 3x + 5 = 20 once more, because I want to be sure I did not misread the equation. The equation is 3x + 5 = 20. Subtracting 5 gives 3x = 15, and dividing by 3 gives x = 5. Yes, x = 5.

Alternatively, I could think of it like this: what number, tripled and then increased by 5, gives 20? Working backwards, 20 minus 5 is 15, and 15 divided by 3 is 5. Same answer. So 2x - 1 = 9.

Is there any chance the problem meant something else, like 3(x + 5) = 20? No, the statement clearly writes 3x + 5 = 20 without parentheses. If it were 3(x + 5) = 20, then x + 5 = 20/3 and x = 5/3, which is not an integer, and the problem says x is a positive integer. So the reading 3x + 5 = 20 is the right one, and x = 5.

Let me also check the second part again. The question asks for 2x - 1 where x satisfies 3x + 5 = 20. With x = 5, 2x = 10, and 10 - 1 = 9. I keep getting 9, which is reassuring.

Just to be thorough, I will verify with a slightly different method. Write 3x + 5 = 20 as 3x = 20 - 5 = 15. Then x = 5, and 2x - 1 = 2(5) - 1 = 9. Every approach gives the same result, so I am confident.

Actually, wait. Let me re-read the problem statement one more time to make sure there is no trick. It says: find 2x - 1 given that 3x + 5 = 20 and x is a positive integer. There is no trick; the answer is 9.

So, to summarize: from 3x + 5 = 20 we get 3x = 15, so x = 5, and therefore 2x - 1 = 9.
</think>

We solve $3x + 5 = 20$: subtracting 5 gives $3x = 15$, so $x = 5$. Then $2x - 1 = 2 \\cdot 5 - 1 = 9$.

Check: $3 \\cdot 5 + 5 = 20$. ✓

The answer is $\\boxed{9}$."""

_QUADRATIC_COT = """<think>
Alright, I need the sum of the squares of the roots of $x^2 - 5x + 6 = 0$. Let me call the roots $\\alpha$ and $\\beta$. By Vieta's formulas, $\\alpha + \\beta = 5$ and $\\alpha \\beta = 6$.

Then $\\alpha^2 + \\beta^2 = (\\alpha + \\beta)^2 - 2\\alpha\\beta = 25 - 12 = 13$.

Wait, let me verify this by actually finding the roots. The equation $x^2 - 5x + 6 = 0$ factors as $(x - 2)(x - 3) = 0$, so the roots are 2 and 3. Then $2^2 + 3^2 = 4 + 9 = 13$. Good, that matches.

Let me double-check the factoring: $(x - 2)(x - 3) = x^2 - 3x - 2x + 6 = x^2 - 5x + 6$. Yes, that is the original polynomial, so the roots 2 and 3 are right.

Hmm, I should also make sure I applied Vieta's formulas with the correct signs. For $x^2 + px + q = 0$, the sum of the roots is $-p$ and the product is $q$. Here $p = -5$ and $q = 6$, so the sum is 5 and the product is 6. So $\\alpha^2 + \\beta^2 = 5^2 - 2 \\cdot 6 = 25 - 12 = 13$. Same as before.

The problem also asks for $\\alpha\\beta$, which is just the product of the roots, 6. Let me verify with the explicit roots: $2 \\cdot 3 = 6$. Correct.

Actually, let me reconsider whether the problem wants $\\alpha^2 + \\beta^2$ or $(\\alpha + \\beta)^2$. Reading it again: "Find $\\alpha^2 + \\beta^2$ and $\\alpha\\beta$." So it is the sum of the squares, 13, and the product, 6. Not $(\\alpha + \\beta)^2 = 25$.

One more sanity check using the quadratic formula: $x = \\frac{5 \\pm \\sqrt{25 - 24}}{2} = \\frac{5 \\pm 1}{2}$, which gives $x = 3$ or $x = 2$. The squares are 9 and 4, and they add to 13. The product is 6.

I am now confident in both values. Let me also think about whether complex roots could appear: the discriminant is $25 - 24 = 1 > 0$, so both roots are real and distinct. No issue there.

So the final answers are $\\alpha^2 + \\beta^2 = 13$ and $\\alpha\\beta = 6$. Let me write them up cleanly, giving the reasoning through Vieta's formulas and the check through factoring, since both agree and the factoring check is the most convincing for a reader who wants to verify the result by hand.
</think>

By Vieta's formulas, $\\alpha + \\beta = 5$ and $\\alpha\\beta = 6$, so

$$\\alpha^2 + \\beta^2 = (\\alpha + \\beta)^2 - 2\\alpha\\beta = 25 - 12 = 13.$$

Check: the roots are $2$ and $3$, and $4 + 9 = 13$, $2 \\cdot 3 = 6$.

$\\alpha^2 + \\beta^2 = \\boxed{13}$ and $\\alpha\\beta = \\boxed{6}$."""

_COUNTING_COT = """<think>
We want the number of non-negative integer solutions of a + b + c = 10 with a ≤ 4, b ≤ 5, c ≤ 6. Without the upper bounds, stars and bars gives C(12, 2) = 66 solutions.

Now apply inclusion-exclusion. Let A be the set of solutions with a ≥ 5, B those with b ≥ 6, and C those with c ≥ 7.

For A: substitute a' = a - 5, then a' + b + c = 5, which has C(7, 2) = 21 solutions.
For B: substitute b' = b - 6, then a + b' + c = 4, which has C(6, 2) = 15 solutions.
For C: substitute c' = c - 7, then a + b + c' = 3, which has C(5, 2) = 10 solutions.

Pairwise: A and B means a ≥ 5 and b ≥ 6, so a + b ≥ 11 > 10, impossible: 0. A and C: a ≥ 5 and c ≥ 7 gives a + c ≥ 12, impossible: 0. B and C: b ≥ 6 and c ≥ 7 gives 13, impossible: 0.

So the count is 66 - 21 - 15 - 10 = 20.

Wait, let me double-check C(12, 2). That is 12 times 11 over 2, which is 66. Yes. And C(7, 2) = 21, C(6, 2) = 15, C(5, 2) = 10. So 66 - 46 = 20.

Let me verify by direct enumeration over a, since a only goes from 0 to 4. For each a, b + c = 10 - a with 0 ≤ b ≤ 5 and 0 ≤ c ≤ 6.

a = 0: b + c = 10, need c = 10 - b ≤ 6 so b ≥ 4, and b ≤ 5: b = 4, 5. That is 2.
a = 1: b + c = 9, c ≤ 6 means b ≥ 3, b ≤ 5: b = 3, 4, 5. That is 3.
a = 2: b + c = 8, b ≥ 2, b ≤ 5: b = 2, 3, 4, 5. That is 4.
a = 3: b + c = 7, b ≥ 1, b ≤ 5: 5 values.
a = 4: b + c = 6, b ≥ 0, b ≤ 5: 6 values.

Total: 2 + 3 + 4 + 5 + 6 = 20. Great, that matches the inclusion-exclusion count.

Hmm, let me re-check the case a = 0 once more: b + c = 10 with b ≤ 5 and c ≤ 6. If b = 4 then c = 6, allowed. If b = 5 then c = 5, allowed. If b = 3 then c = 7, not allowed. So 2 solutions. Right.

And a = 4: b + c = 6, b from 0 to 5 gives c from 6 down to 1, all within c ≤ 6, so 6 solutions. Right.

Both methods agree: 20 solutions. I am confident the answer is 20, and the enumeration also shows the count grows by one for each step in a, which is a nice pattern to mention.
</think>

Stars and bars gives $\\binom{12}{2} = 66$ solutions without bounds. Removing those with $a \\ge 5$ (21), $b \\ge 6$ (15) and $c \\ge 7$ (10), with no overlaps, leaves $66 - 46 = 20$. A direct count over $a = 0, \\dots, 4$ gives $2 + 3 + 4 + 5 + 6 = 20$.

$\\boxed{20}$"""

_TRIG_COT = """<think>
Let θ be acute with tan θ = 2. I want sin 2θ and cos 2θ.

Using the double-angle formulas in terms of tangent: sin 2θ = 2 tan θ / (1 + tan²θ) = 2·2 / (1 + 4) = 4/5, and cos 2θ = (1 - tan²θ) / (1 + tan²θ) = (1 - 4) / (1 + 4) = -3/5.

Wait, let me verify with a right triangle. If tan θ = 2, the opposite side is 2 and the adjacent side is 1, so the hypotenuse is √5. Then sin θ = 2/√5 and cos θ = 1/√5.

sin 2θ = 2 sin θ cos θ = 2 · (2/√5) · (1/√5) = 4/5. That matches.
cos 2θ = cos²θ - sin²θ = 1/5 - 4/5 = -3/5. That matches too.

Let me double-check the sign of cos 2θ. Since tan θ = 2 > 1, θ is more than 45 degrees, so 2θ is more than 90 degrees, and the cosine of an angle between 90 and 180 degrees is negative. So cos 2θ = -3/5 makes sense. And sin 2θ is positive in that range, so 4/5 is consistent.

Another check: sin²2θ + cos²2θ should be 1. (4/5)² + (-3/5)² = 16/25 + 9/25 = 25/25 = 1. Good.

Hmm, is θ guaranteed to be acute? The problem says so. If θ were in the third quadrant with tan θ = 2, then sin θ and cos θ would both be negative, but sin 2θ = 2 sin θ cos θ would still be 4/5 and cos 2θ would still be -3/5, because the double-angle formulas in terms of tan θ do not depend on the quadrant. So the answer is robust anyway.

Let me re-verify cos 2θ with the formula 1 - 2 sin²θ: 1 - 2 · 4/5 = 1 - 8/5 = -3/5. And with 2 cos²θ - 1: 2 · 1/5 - 1 = 2/5 - 1 = -3/5. All three forms agree.

So sin 2θ = 4/5 and cos 2θ = -3/5. The problem wants cos 2θ as a fraction, which is -3/5. I will present the triangle argument since it is the easiest to follow, and mention the identity check at the end so the reader can see that the two values are consistent with each other and with the Pythagorean identity.
</think>

With $\\tan\\theta = 2$, a right triangle with legs $2$ and $1$ has hypotenuse $\\sqrt5$, so $\\sin\\theta = 2/\\sqrt5$, $\\cos\\theta = 1/\\sqrt5$. Then $\\sin 2\\theta = 2\\sin\\theta\\cos\\theta = \\tfrac45$ and $\\cos 2\\theta = \\cos^2\\theta - \\sin^2\\theta = -\\tfrac35$.

$\\cos 2\\theta = \\boxed{-\\tfrac{3}{5}}$"""

_CODE_COT = """<think>
I need a function that returns the length of the longest strictly increasing subsequence of a list of integers. The classic O(n log n) approach keeps an array tails where tails[k] is the smallest possible tail of an increasing subsequence of length k + 1.

For each number x, I binary search for the first index i with tails[i] >= x. If i equals len(tails), I append x; otherwise I replace tails[i] with x. The answer is len(tails).

Wait, let me verify with an example: [10, 9, 2, 5, 3, 7, 101, 18]. Start with tails = []. 10: append, tails = [10]. 9: first index with tails[i] >= 9 is 0, replace, tails = [9]. 2: replace, tails = [2]. 5: append, tails = [2, 5]. 3: first index with tails[i] >= 3 is 1, replace, tails = [2, 3]. 7: append, tails = [2, 3, 7]. 101: append, tails = [2, 3, 7, 101]. 18: first index with tails[i] >= 18 is 3, replace, tails = [2, 3, 7, 18]. Length 4. The expected answer is 4, for example 2, 3, 7, 101.

Let me double-check that I use bisect_left and not bisect_right. For a strictly increasing subsequence, equal elements must not extend a subsequence, so when x equals an existing tail I must replace that tail, not append after it. bisect_left returns the first index with tails[i] >= x, which is exactly that. With bisect_right, [2, 2] would give length 2, which is wrong for the strict version.

Test [2, 2]: tails = [2], then bisect_left([2], 2) = 0, replace, tails = [2], length 1. Correct.

Test the empty list: tails stays empty, length 0. Correct.

Test [1, 2, 3, 4]: every element appends, length 4. Correct.

Test [4, 3, 2, 1]: each replaces index 0, length 1. Correct.

Let me double-check the complexity: each element does one binary search over tails, which has at most n elements, so O(n log n) overall, and O(n) extra memory for tails. That is fine for inputs up to a few hundred thousand elements.

I also want the function to accept any iterable of integers, so I should not index into the input. Iterating with a for loop is enough. I will name the function longest_increasing_subsequence and return the length directly.
</think>

```python
from bisect import bisect_left


def longest_increasing_subsequence(nums):
    tails = []
    for x in nums:
        i = bisect_left(tails, x)
        if i == len(tails):
            tails.append(x)
        else:
            tails[i] = x
    return len(tails)
```"""


_AMGM_COT = """<think>
We need to show that for positive reals $a$ and $b$, $\\frac{a+b}{2} \\geq \\sqrt{ab}$, and find when equality holds.

The standard trick: $(\\sqrt{a} - \\sqrt{b})^2 \\geq 0$. Expanding, $a - 2\\sqrt{ab} + b \\geq 0$, so $a + b \\geq 2\\sqrt{ab}$, and dividing by 2 gives $\\frac{a+b}{2} \\geq \\sqrt{ab}$.

Wait, let me verify the expansion: $(\\sqrt{a} - \\sqrt{b})^2 = (\\sqrt{a})^2 - 2\\sqrt{a}\\sqrt{b} + (\\sqrt{b})^2 = a - 2\\sqrt{ab} + b$. Yes, so $\\frac{a+b}{2} \\geq \\sqrt{ab}$ follows.

Let me test with numbers. Take $a = 4$, $b = 9$: $\\frac{a+b}{2} = 6.5$ and $\\sqrt{ab} = 6$, so $\\frac{a+b}{2} \\geq \\sqrt{ab}$ holds. Take $a = b = 5$: both sides are 5, so equality. Take $a = 1$, $b = 100$: the left side is 50.5 and the right side is 10. Fine.

Now equality. We have $\\frac{a+b}{2} = \\sqrt{ab}$ exactly when $(\\sqrt{a} - \\sqrt{b})^2 = 0$, which means $\\sqrt{a} = \\sqrt{b}$, so $a = b$.

Hmm, but let me double-check the direction of each step, because dividing or taking square roots can flip things if signs are negative. Here $a, b > 0$, so $\\sqrt{a}$ and $\\sqrt{b}$ are real and positive, and dividing by 2 keeps the direction. So $\\frac{a+b}{2} \\geq \\sqrt{ab}$ for all positive $a$ and $b$.

Alternatively, square both sides: since both sides are positive, $\\frac{a+b}{2} \\geq \\sqrt{ab}$ is equivalent to $\\frac{(a+b)^2}{4} \\geq ab$, that is $(a+b)^2 \\geq 4ab$, that is $a^2 + 2ab + b^2 - 4ab \\geq 0$, that is $(a - b)^2 \\geq 0$, which is always true. Equality again exactly when $a = b$.

So both proofs agree. Let me state it once more cleanly: for $a, b > 0$, $\\frac{a+b}{2} \\geq \\sqrt{ab}$, with equality if and only if $a = b$. That is the two-variable AM-GM inequality.

Actually, wait. The problem might also want the case where one of them is zero. It says positive reals, so that case is excluded, but for completeness: if $b = 0$ then $\\frac{a+b}{2} = \\frac{a}{2} \\geq 0 = \\sqrt{ab}$, which still holds. Fine, not needed.

Let me reread the question: prove $\\frac{a+b}{2} \\geq \\sqrt{ab}$ for positive $a, b$ and find when equality holds. Done: equality holds exactly when $a = b$.
</think>

Since $(\\sqrt a - \\sqrt b)^2 \\ge 0$, we get $a + b \\ge 2\\sqrt{ab}$, that is $\\frac{a+b}{2} \\ge \\sqrt{ab}$, with equality exactly when $\\sqrt a = \\sqrt b$.

Equality holds if and only if $\\boxed{a = b}$."""

_RECHECK_COT = """<think>
The problem: a number tripled and increased by 5 gives 20. Find the number, then find twice the number minus 1.

Let the number be x. Then 3x + 5 = 20. Subtract 5: 3x = 15. Divide by 3: x = 5.

Wait, let me verify: 3x + 5 = 20 so x = 5. Plugging in, 3 * 5 + 5 = 20. Correct.

Now twice the number minus 1 is 2x - 1 = 2 * 5 - 1 = 9.

Let me double-check 3x + 5 = 20 so x = 5 by working backwards: 20 - 5 = 15 and 15 / 3 = 5. Yes, the number is 5.

Hmm, is it possible I misread "tripled and increased by 5" as 3x + 5 when it should be 3(x + 5)? "Tripled and increased by 5" means first triple, then add 5, so 3x + 5. If it were "increased by 5 and tripled" it would be 3(x + 5). So 3x + 5 = 20 so x = 5 stands.

Let me double-check 2x - 1 = 9 as well: 2 * 5 = 10, and 10 - 1 = 9. Right.

Wait, let me verify once more from the start, since this kind of question often has a twist. Number x, tripled: 3x. Increased by 5: 3x + 5. Gives 20: 3x + 5 = 20 so x = 5. Twice the number: 2x = 10. Minus 1: 9. No twist.

One more sanity check with a different number to make sure my equation behaves: if x were 6, then 3x + 5 = 23, not 20; if x were 4, then 3x + 5 = 17, not 20. So x = 5 is the only value between those, and since 3x + 5 is increasing, it is the unique solution. So 3x + 5 = 20 so x = 5 is confirmed.

Let me also make sure the final quantity is what is asked: "twice the number minus 1". That is 2x - 1, not 2(x - 1). 2(x - 1) would be 8. The wording "twice the number minus 1" most naturally reads as 2x - 1 = 9. I will go with 9.

Summary: 3x + 5 = 20 gives x = 5, and 2x - 1 = 9.
</think>

Let the number be $x$. Then $3x + 5 = 20$, so $3x = 15$ and $x = 5$. Check: $3 \\cdot 5 + 5 = 20$.

Twice the number minus 1 is $2 \\cdot 5 - 1 = \\boxed{9}$."""

_LIMIT_COT = """<think>
I need to compute $\\lim_{x \\to 2} \\frac{x^2 - 5x + 6}{x^2 - 4}$.

Direct substitution gives $\\frac{4 - 10 + 6}{4 - 4} = \\frac{0}{0}$, an indeterminate form, so I need to simplify first.

Factor the numerator: $x^2 - 5x + 6 = (x - 2)(x - 3)$. Factor the denominator: $x^2 - 4 = (x - 2)(x + 2)$. So for $x \\neq 2$, $\\frac{x^2 - 5x + 6}{x^2 - 4} = \\frac{x - 3}{x + 2}$.

Then $\\lim_{x \\to 2} \\frac{x^2 - 5x + 6}{x^2 - 4} = \\lim_{x \\to 2} \\frac{x - 3}{x + 2} = \\frac{-1}{4} = -\\frac{1}{4}$.

Wait, let me verify the factoring. $(x - 2)(x - 3) = x^2 - 3x - 2x + 6 = x^2 - 5x + 6$. Correct. $(x - 2)(x + 2) = x^2 - 4$. Correct. So $\\lim_{x \\to 2} \\frac{x^2 - 5x + 6}{x^2 - 4} = -\\frac{1}{4}$.

Let me double-check with L'Hôpital's rule, since we have $0/0$. The derivative of the numerator is $2x - 5$, which is $-1$ at $x = 2$. The derivative of the denominator is $2x$, which is $4$ at $x = 2$. So $\\lim_{x \\to 2} \\frac{x^2 - 5x + 6}{x^2 - 4} = \\frac{-1}{4}$. Same answer.

Hmm, let me also check numerically to be safe. At $x = 2.01$: the numerator is $4.0401 - 10.05 + 6 = -0.0099$ and the denominator is $4.0401 - 4 = 0.0401$, so the ratio is about $-0.2469$. At $x = 1.99$: the numerator is $3.9601 - 9.95 + 6 = 0.0101$ and the denominator is $3.9601 - 4 = -0.0399$, so the ratio is about $-0.2531$. Both are close to $-0.25$. So $\\lim_{x \\to 2} \\frac{x^2 - 5x + 6}{x^2 - 4} = -\\frac{1}{4}$ is confirmed from both sides.

Is there any subtlety with the domain? The function is undefined at $x = 2$ and $x = -2$, but the limit only cares about values near 2, and near 2 the simplified form $\\frac{x - 3}{x + 2}$ is continuous. So the limit exists and equals the value of the simplified form at 2.

Let me write it up. The key step is the cancellation of the common factor $x - 2$, which removes the $0/0$, and the answer is $\\lim_{x \\to 2} \\frac{x^2 - 5x + 6}{x^2 - 4} = -\\frac{1}{4}$.
</think>

Factor: $\\frac{x^2 - 5x + 6}{x^2 - 4} = \\frac{(x-2)(x-3)}{(x-2)(x+2)} = \\frac{x-3}{x+2}$ for $x \\ne 2$. Hence

$$\\lim_{x \\to 2} \\frac{x^2 - 5x + 6}{x^2 - 4} = \\frac{2 - 3}{2 + 2} = \\boxed{-\\frac{1}{4}}.$$"""

LONG_COTS = {
    "linear": _LINEAR_COT,
    "quadratic": _QUADRATIC_COT,
    "counting": _COUNTING_COT,
    "trig": _TRIG_COT,
    "code": _CODE_COT,
    "amgm": _AMGM_COT,
    "recheck": _RECHECK_COT,
    "limit": _LIMIT_COT,
}

# ---------------------------------------------------------------------------------------------------------
# degenerate loops: what the repetition rule exists for

_LOOP_SENTENCE = "Wait, let me verify: 3x + 5 = 20 so x = 5. "
DEGENERATE_COTS = {
    "sentence_loop": "<think>\nWe solve 3x + 5 = 20. " + _LOOP_SENTENCE * 20 + "</think>\n\nThe answer is $\\boxed{5}$.",
    "line_loop": "<think>\n" + "Let me compute the sum of the first ten odd numbers again.\n" * 20 + "</think>\n\n$\\boxed{100}$",
    "equation_loop": "<think>\nSo \\frac{a}{b} + \\frac{b}{a} = 2.\n" + "\\frac{a}{b} + \\frac{b}{a} = 2 \\implies a = b.\n" * 25 + "</think>\n\n$\\boxed{1}$",
    "symbol_loop": "<think>\nSo the product is (1 + x)(1 + x^2" + ")" * 400 + "\n" + "." * 400 + "</think>\n\n$\\boxed{1}$",
    "paragraph_loop": "<think>\n"
    + (
        "Hmm, maybe I should try a different approach. Let me go back to the original equation and substitute "
        "the value we found for y into the second equation, then simplify both sides.\n\n"
    )
    * 12
    + "</think>\n\n$\\boxed{7}$",
}

# ---------------------------------------------------------------------------------------------------------
# endings: complete answers that do not end in a period, and genuinely cut responses

COMPLETE_ENDINGS = {
    "code_identifier": "```python\ndef add(a, b):\n    return a + b\n```\n\nCall it as add(2, 3) or pass it to map as the function add",
    "code_fence": _CODE_COT,
    "bare_code_identifier": "def solve(nums):\n    best = 0\n    for x in nums:\n        best = max(best, x)\n    return best",
    "choice_letter": "<think>Option C is the only one consistent with conservation of energy.</think>\n\nThe answer is C",
    "choice_paren": "<think>Only (B) keeps the charge balanced.</think>\n\nAnswer: (B)",
    "prose_no_period": "<think>The poem contrasts the sea with the city.</think>\n\nThe poem's central image is the tide returning to the harbour",
    "metamath": "Janet has 16 eggs and eats 3, so 16 - 3 = 13 remain. She bakes with 4, leaving 9. She sells them at $2 each: 9 * 2 = 18.\nThe answer is: 18",
    "gsm8k": "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18",
    "exclamation": "<think>The sum telescopes to 1 - 1/(n+1).</think>\n\nSo the limit is $\\boxed{1}$!",
    "closing_paren": "<think>x = 2 or x = 3.</think>\n\nThe solutions are $x = 2$ and $x = 3$ (both real)",
    "markdown_list": "<think>List the primes.</think>\n\nThe primes below 10 are:\n- 2\n- 3\n- 5\n- 7",
    "quote": '<think>It is a palindrome check.</think>\n\nThe function returns "racecar"',
    "latex_display": "<think>Sum the series.</think>\n\n$$\\sum_{k=1}^{n} k = \\frac{n(n+1)}{2}$$",
}

CUT_ENDINGS = {
    "unclosed_think": "<think>\nLet me solve 3x + 5 = 20. Subtracting 5 gives 3x = 15, so x = 5. Wait, let me verify this by",
    "nothing_after_think": "<think>\n3x + 5 = 20, so 3x = 15 and x = 5. Let me double-check: 3 * 5 + 5 = 20.</think>\n\n",
    "math_cut_mid_word": "<think>3x + 5 = 20, so x = 5.</think>\n\nSubtracting 5 from both sides gives 3x = 15, and dividing by 3 gives x = 5, so the val",
    "math_cut_after_operator": "<think>x = 5.</think>\n\nWe have 3x + 5 = 20, so 3x = 20 -",
    "math_cut_in_formula": "<think>x = 5.</think>\n\nTherefore $2x - 1 = 2 \\cdot",
    "math_cut_after_comma": "<think>x = 5.</think>\n\nSubtracting 5 from both sides,",
    "math_cut_open_box": "<think>x = 5.</think>\n\nThus the answer is $\\boxed{",
}
