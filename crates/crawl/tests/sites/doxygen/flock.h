/**
 * @file flock.h
 * @brief Counting sheep from C.
 */
#ifndef FLOCK_H
#define FLOCK_H

/** The most sheep a pen holds. */
#define FLOCK_PEN_SIZE 40

/**
 * @brief A pen that holds sheep until shearing.
 *
 * Fill it one sheep at a time:
 *
 * @code
 * struct flock_pen pen = {0};
 * for (int i = 0; i < 3; i++) {
 *     if (flock_pen_add(&pen, i) != 0) {
 *         break;
 *     }
 * }
 * @endcode
 */
struct flock_pen {
    /** The sizes of the sheep in the pen. */
    int sheep[FLOCK_PEN_SIZE];
    /** How many are in it. */
    int count;
};

/**
 * @brief Counts the sheep of a flock.
 *
 * @param flock the sizes of the sheep
 * @param n how many there are
 * @return the total
 */
int flock_count(const int *flock, int n);

/**
 * @brief Puts one sheep in a pen.
 *
 * @param pen the pen
 * @param sheep the sheep's size
 * @return 0, or -1 when the pen is full
 */
int flock_pen_add(struct flock_pen *pen, int sheep);

#endif
