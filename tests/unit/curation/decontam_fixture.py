r"""Competition problems for decontamination quality: benchmark items, edited leaks of them, and clean near-misses.

Written for this test in the style of AIME/AMC/olympiad problems (LaTeX as the sources write it); nine items have
no digits. ``LEAKS`` are (edit class, item id, text): ``verbatim``, ``reformatted`` (whitespace, ``$``, ``\frac``
vs ``/``, ``\left``), ``renamed`` (other variable letters), ``reordered`` (sentences moved), ``paraphrased``
(the wording around the numbers changed). ``CLEAN`` are different problems on the same topics: other numbers in
the same template, the same opening phrase, the same objects with another question.
"""

from __future__ import annotations

ITEMS: dict[str, str] = {
    "pairs": r"Find the number of ordered pairs of positive integers $(m, n)$ such that $m^2 n = 20^{20}$.",
    "digits7": r"Let $N$ be the greatest four-digit positive integer with the property that whenever one of its digits is changed to $1$, the resulting number is divisible by $7$. Let $Q$ and $R$ be the quotient and remainder, respectively, when $N$ is divided by $1000$. Find $Q+R$.",
    "pow13": r"Find the remainder when $2^{2024}$ is divided by $13$.",
    "squarediv": r"How many positive divisors of $6^{10}$ are perfect squares?",
    "marbles": r"A bag contains $5$ red marbles and $7$ blue marbles. Two marbles are drawn at random without replacement. What is the probability that both marbles are red? Express your answer as a common fraction.",
    "altitude": r"In triangle $ABC$, $AB = 13$, $BC = 14$, and $CA = 15$. Find the length of the altitude from $A$ to side $BC$.",
    "square99": r"Find the sum of all positive integers $n$ for which $n^2 - 19n + 99$ is a perfect square.",
    "seq50": r"The sequence $a_1, a_2, a_3, \ldots$ satisfies $a_1 = 1$ and $a_{n+1} = a_n + 2n$ for all $n \geq 1$. Find $a_{50}$.",
    "cubes": r"Real numbers $x$ and $y$ satisfy $x + y = 10$ and $xy = 21$. Compute $x^3 + y^3$.",
    "ffmin": r"Let $f(x) = x^2 + 6x + 7$. Find the minimum value of $f(f(x))$ over all real numbers $x$.",
    "hexagon": r"A regular hexagon has side length $6$. What is the area of the hexagon? Express your answer in simplest radical form.",
    "lottery": r"Jen enters a lottery by picking $4$ distinct numbers from $S=\{1,2,3,\cdots,9,10\}$. $4$ numbers are randomly chosen from $S$. She wins a prize if at least two of her numbers were $2$ of the randomly chosen numbers, and wins the grand prize if all four of her numbers were the randomly chosen numbers. The probability of her winning the grand prize given that she won a prize is $\tfrac{m}{n}$ where $m$ and $n$ are relatively prime positive integers. Find $m+n$.",
    "prime9991": r"What is the largest prime factor of $9991$?",
    "telescope": r"Compute $\displaystyle\sum_{k=1}^{99} \frac{1}{k(k+1)}$.",
    "rectangle": r"A rectangle has perimeter $56$ and a diagonal of length $20$. What is the area of the rectangle?",
    "zeros": r"Find the smallest positive integer $n$ such that $n!$ ends in exactly $25$ zeros.",
    "stones": r"Alice and Bob play a game with a stack of $n$ tokens. The players take turns with Alice going first. On each turn, the player removes either $1$ token or $4$ tokens from the stack. Whoever removes the last token wins. Find the number of positive integers $n$ less than or equal to $2024$ for which there exists a strategy for Bob that guarantees that Bob will win the game regardless of Alice's play.",
    "vieta": r"The polynomial $x^3 - 6x^2 + 11x - 6$ has roots $r$, $s$, and $t$. Compute $r^2 + s^2 + t^2$.",
    "logs": r"Real numbers $x$ and $y$ with $x, y > 1$ satisfy $\log_x(y^x) = \log_y(x^{4y}) = 10$. What is the value of $xy$?",
    "clock": r"At $3{:}40$, what is the measure in degrees of the acute angle formed by the hour hand and the minute hand of a clock?",
    # no digits
    "banana": r"How many ways are there to arrange the letters of the word BANANA so that no two A's are adjacent?",
    "powerineq": r"For positive real numbers $a$, $b$, $c$, prove that $a^a b^b c^c \ge a^b b^c c^a$.",
    "reflection": r"Let $ABC$ be an acute triangle with circumcenter $O$ and orthocenter $H$. Prove that the reflection of $H$ over the midpoint of $BC$ lies on the circumcircle of triangle $ABC$.",
    "interior": r"Let $P$ be a point inside triangle $ABC$. Prove that the sum of the distances from $P$ to the three vertices is less than the perimeter of the triangle.",
    "consecutive": r"Show that the product of any three consecutive integers is divisible by six.",
    "cauchy": r"Find all functions $f$ from the reals to the reals such that $f(x + y) = f(x) + f(y)$ and $f(xy) = f(x) f(y)$ for all real numbers $x$ and $y$.",
    "perpdiag": r"In a convex quadrilateral $ABCD$ the diagonals $AC$ and $BD$ are perpendicular. Prove that the midpoints of the four sides lie on a circle.",
    "fivepoints": r"Prove that among any five points in the plane, no three of which are collinear, there are four that are the vertices of a convex quadrilateral.",
    "irrational": r"Prove that the square root of two is irrational.",
}

LEAKS: list[tuple[str, str, str]] = [
    # verbatim (inside a longer training prompt, or with the benchmark's own boilerplate)
    ("verbatim", "pairs", r"Problem 3. Find the number of ordered pairs of positive integers $(m, n)$ such that $m^2 n = 20^{20}$. Please reason step by step, and put your final answer within \boxed{}."),
    ("verbatim", "lottery", ITEMS["lottery"]),
    ("verbatim", "stones", ITEMS["stones"]),
    ("verbatim", "reflection", ITEMS["reflection"]),
    ("verbatim", "cauchy", "Solve the following problem. " + ITEMS["cauchy"]),
    ("verbatim", "banana", ITEMS["banana"]),
    ("verbatim", "interior", ITEMS["interior"]),
    ("verbatim", "prime9991", ITEMS["prime9991"]),
    # reformatted: whitespace, $…$ removed, \frac vs /, \left( \right), \dfrac, line breaks
    ("reformatted", "digits7", r"Let N be the greatest four-digit positive integer with the property that whenever one of its digits is changed to 1, the resulting number is divisible by 7.  Let Q and R be the quotient and remainder,   respectively, when N is divided by 1000.\nFind Q + R."),
    ("reformatted", "telescope", r"Compute \[\sum_{k = 1}^{99} \dfrac{1}{k \left( k + 1 \right)}.\]"),
    ("reformatted", "marbles", r"A bag contains 5 red marbles and 7 blue marbles.\n\nTwo marbles are drawn at random without replacement. What is the probability that both marbles are red? Express your answer as a common fraction."),
    ("reformatted", "powerineq", r"For positive real numbers \(a,b,c\), prove that \(a^{a}b^{b}c^{c}\geq a^{b}b^{c}c^{a}\)."),
    ("reformatted", "fivepoints", "Prove that among any five points in the plane,\nno three of which are collinear,\nthere are four that are the vertices of a convex quadrilateral."),
    ("reformatted", "vieta", r"The polynomial \(x^{3}-6x^{2}+11x-6\) has roots \(r,\ s,\ t\). Compute \(r^{2}+s^{2}+t^{2}\)."),
    ("reformatted", "logs", r"Real numbers x and y with x,y>1 satisfy \log_{x}\left(y^{x}\right)=\log_{y}\left(x^{4y}\right)=10. What is the value of xy?"),
    ("reformatted", "consecutive", "Show  that the product of ANY three consecutive integers is divisible by six!"),
    # renamed variables
    ("renamed", "cubes", r"Real numbers $a$ and $b$ satisfy $a + b = 10$ and $ab = 21$. Compute $a^3 + b^3$."),
    ("renamed", "ffmin", r"Let $g(t) = t^2 + 6t + 7$. Find the minimum value of $g(g(t))$ over all real numbers $t$."),
    ("renamed", "seq50", r"The sequence $b_1, b_2, b_3, \ldots$ satisfies $b_1 = 1$ and $b_{k+1} = b_k + 2k$ for all $k \geq 1$. Find $b_{50}$."),
    ("renamed", "powerineq", r"For positive real numbers $x$, $y$, $z$, prove that $x^x y^y z^z \ge x^y y^z z^x$."),
    ("renamed", "perpdiag", r"In a convex quadrilateral $PQRS$ the diagonals $PR$ and $QS$ are perpendicular. Prove that the midpoints of the four sides lie on a circle."),
    ("renamed", "square99", r"Find the sum of all positive integers $k$ for which $k^2 - 19k + 99$ is a perfect square."),
    # reordered sentences
    ("reordered", "altitude", r"Find the length of the altitude from $A$ to side $BC$ in triangle $ABC$, where $AB = 13$, $BC = 14$, and $CA = 15$."),
    ("reordered", "marbles", r"Two marbles are drawn at random without replacement from a bag that contains $5$ red marbles and $7$ blue marbles. What is the probability that both marbles are red? Express your answer as a common fraction."),
    ("reordered", "rectangle", r"What is the area of a rectangle that has perimeter $56$ and a diagonal of length $20$?"),
    ("reordered", "reflection", r"Prove that the reflection of $H$ over the midpoint of $BC$ lies on the circumcircle of triangle $ABC$, where $ABC$ is an acute triangle with circumcenter $O$ and orthocenter $H$."),
    ("reordered", "stones", r"Find the number of positive integers $n$ less than or equal to $2024$ for which there exists a strategy for Bob that guarantees that Bob will win the game regardless of Alice's play. Alice and Bob play a game with a stack of $n$ tokens; the players take turns with Alice going first, and on each turn the player removes either $1$ token or $4$ tokens from the stack. Whoever removes the last token wins."),
    ("reordered", "cauchy", r"For all real numbers $x$ and $y$, $f(x + y) = f(x) + f(y)$ and $f(xy) = f(x) f(y)$. Find all functions $f$ from the reals to the reals with this property."),
    # paraphrased around the numbers
    ("paraphrased", "pow13", r"What is $2^{2024}$ modulo $13$?"),
    ("paraphrased", "zeros", r"Determine the least positive integer $n$ for which the decimal representation of $n!$ ends with exactly $25$ zeros."),
    ("paraphrased", "hexagon", r"Find the area of a regular hexagon whose sides each have length $6$. Give your answer in simplest radical form."),
    ("paraphrased", "clock", r"What is the acute angle, in degrees, between the hour hand and the minute hand of a clock at $3{:}40$?"),
    ("paraphrased", "squarediv", r"Find how many of the positive divisors of $6^{10}$ are perfect squares."),
    ("paraphrased", "prime9991", r"Determine the biggest prime that divides $9991$."),
]

CLEAN: list[str] = [
    # the same template, other numbers
    r"Find the number of ordered pairs of positive integers $(m, n)$ such that $m^2 n = 30^{30}$.",
    r"Find the remainder when $3^{2024}$ is divided by $11$.",
    r"How many positive divisors of $12^{8}$ are perfect cubes?",
    r"A bag contains $4$ red marbles and $9$ blue marbles. Three marbles are drawn at random without replacement. What is the probability that all three marbles are blue? Express your answer as a common fraction.",
    r"In triangle $ABC$, $AB = 7$, $BC = 8$, and $CA = 9$. Find the length of the median from $A$ to side $BC$.",
    r"Real numbers $x$ and $y$ satisfy $x + y = 10$ and $xy = 21$. Compute $x^2 + y^2$.",
    r"Let $f(x) = x^2 + 4x + 1$. Find the minimum value of $f(f(x))$ over all real numbers $x$.",
    r"A regular hexagon has side length $10$. What is the area of the hexagon? Express your answer in simplest radical form.",
    r"What is the largest prime factor of $8633$?",
    r"Find the smallest positive integer $n$ such that $n!$ ends in exactly $31$ zeros.",
    r"The polynomial $x^3 - 7x^2 + 14x - 8$ has roots $r$, $s$, and $t$. Compute $r^2 + s^2 + t^2$.",
    r"A rectangle has perimeter $34$ and a diagonal of length $13$. What is the area of the rectangle?",
    r"Compute $\displaystyle\sum_{k=1}^{49} \frac{1}{k(k+2)}$.",
    r"At $7{:}20$, what is the measure in degrees of the acute angle formed by the hour hand and the minute hand of a clock?",
    # the same opening phrase or objects, another problem (digit-free items' topics)
    r"How many ways are there to arrange the letters of the word MISSISSIPPI so that no two S's are adjacent?",
    r"For positive real numbers $a$, $b$, $c$, prove that $(a + b)(b + c)(c + a) \ge 8abc$.",
    r"For positive real numbers $a$, $b$, $c$ with $abc = 1$, prove that $a^2 + b^2 + c^2 \ge a + b + c$.",
    r"Let $ABC$ be an acute triangle with circumcenter $O$ and orthocenter $H$. Prove that $\angle BAH = \angle CAO$.",
    r"Let $ABC$ be an acute triangle with orthocenter $H$. Prove that the reflection of $H$ over the line $BC$ lies on the circumcircle of triangle $ABC$.",
    r"Let $P$ be a point inside triangle $ABC$. Prove that $PA + PB + PC$ is greater than half the perimeter of the triangle.",
    r"Show that the product of any four consecutive integers is one less than a perfect square.",
    r"Find all functions $f$ from the reals to the reals such that $f(x + f(y)) = f(x) + y$ for all real numbers $x$ and $y$.",
    r"In a convex quadrilateral $ABCD$ the diagonals $AC$ and $BD$ are equal. Prove that the midpoints of the four sides form a rhombus.",
    r"Prove that among any nine points in the plane, no three of which are collinear, there are five that are the vertices of a convex pentagon.",
    r"Prove that the cube root of three is irrational.",
    # same objects, other question, same numbers
    r"In triangle $ABC$, $AB = 13$, $BC = 14$, and $CA = 15$. Find the radius of the inscribed circle.",
    r"Real numbers $x$ and $y$ satisfy $x + y = 10$ and $xy = 21$. Find $|x - y|$.",
    r"A bag contains $5$ red marbles and $7$ blue marbles. One marble is drawn at random. What is the probability that it is blue?",
]
