/* kdlib umbrella header: everything in the public API. */
#ifndef KDLIB_KDLIB_H
#define KDLIB_KDLIB_H

#include "kdlib/core.h"
#include "kdlib/loss.h"
#include "kdlib/ema.h"
#include "kdlib/labels.h"
#include "kdlib/flexmatch.h"
#include "kdlib/threshold.h"
#include "kdlib/linear.h"

#endif
